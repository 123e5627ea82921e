"""`python -m source_klaviyo`: the same as the `source-klaviyo` command."""

from source_klaviyo.cli import main

raise SystemExit(main())
