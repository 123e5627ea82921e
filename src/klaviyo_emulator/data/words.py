"""Word pools with the Unicode real accounts have: accents, Cyrillic, CJK, Hangul, emoji."""

FIRST_NAMES = (
    "Sarah", "José", "Zoë", "Łukasz", "François", "Mohammed", "Ngọc", "Søren", "Chloé", "Björk", "Иван",
    "Олена", "王芳", "さくら", "김민준", "Amélie", "Renée", "Dževad", "Ólafur", "Siobhán", "John", "Maria",
    "Ana", "Kai", "Noël", "Αθηνά", "Priya", "Jürgen", "Ramón", "Émile", "李娜", "🦄 Uni", "Mateus", "Ayşe",
)  # fmt: skip
LAST_NAMES = (
    "Mason", "García", "Müller", "Nowak", "Dubois", "Nguyễn", "Sørensen", "O'Brien", "Иванов", "Шевченко",
    "张", "田中", "이", "Lefèvre", "Kovačević", "Jónsson", "Ó Súilleabháin", "Smith", "Silva", "Öztürk",
    "Papadopoulos", "Patel", "Schäfer", "Álvarez", "Łuczak", "van der Berg", "🌟", "Δημητρίου",
)  # fmt: skip
CITIES = (
    ("New York", "United States", "NY", "America/New_York", "10017", 40.7527, -73.9772),
    ("São Paulo", "Brazil", "SP", "America/Sao_Paulo", "01310-100", -23.5614, -46.6559),
    ("Zürich", "Switzerland", "ZH", "Europe/Zurich", "8001", 47.3769, 8.5417),
    ("東京", "Japan", "Tokyo", "Asia/Tokyo", "100-0001", 35.6812, 139.7671),
    ("Kraków", "Poland", None, "Europe/Warsaw", "30-001", 50.0647, 19.9450),
    ("Montréal", "Canada", "QC", "America/Toronto", "H2Y 1C6", 45.5017, -73.5673),
    ("서울", "South Korea", "Seoul", "Asia/Seoul", "04524", 37.5665, 126.9780),
    ("Reykjavík", "Iceland", None, "Atlantic/Reykjavik", "101", 64.1466, -21.9426),
    ("Austin", "United States", "TX", "America/Chicago", "78701", 30.2672, -97.7431),
)  # fmt: skip
ORGANIZATIONS = (
    "Example Corp",
    "Café Müller GmbH",
    "株式会社サンプル",
    "Acme & Söhne",
    "Ñandú Ltda.",
    "🍕 Pizza Co",
)
TITLES = ("Regional Manager", "Buyer", "Directrice générale", "エンジニア", "Owner", "CTO")
LOCALES = ("en-US", "fr-FR", "de-DE", "ja-JP", "pt-BR", "ko-KR", "pl-PL", "is-IS")
PRODUCTS = (
    "Ocean Blue Shirt", "Café ☕ Mug", "Crème Brûlée Candle", "抹茶 Tea Set", "Ünïcödé Socks", "Sneaker 👟 X",
    "Smørrebrød Board", "Ёлка Ornament", "Plain Tee",
)  # fmt: skip
WORDS = (
    "Summer", "Sale", "Welcome", "Back", "Winback", "Été", "Nouveautés", "Black Friday", "夏", "セール",
    "VIP", "Flash", "Holiday", "🎉 Launch", "Abandoned", "Cart", "Browse", "Reminder", "Newsletter", "Ostern",
)  # fmt: skip
