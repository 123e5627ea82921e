import sys

from source_klaviyo.sync.commands import main

sys.exit(main())
