"""Texts that tokenizers and encoders get wrong first: odd spaces, control and zero-width characters, combining
accents, full-width and CJK text, emoji, code, and texts far past a model's length limit (the encoder tests compare
two implementations on them)."""

from __future__ import annotations

ODD = [
    "",
    " ",
    "   \t\n  ",
    "\u3000\u2003\u00a0",  # ideographic, em and no-break spaces
    "\u200b\u200d\ufeff",  # zero-width characters and a byte-order mark
    "\x00\x07\x1b[31mred\x1b[0m\x7f",  # control characters
    "e\u0301te\u0301 A\u030a",  # combining accents (NFD)
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
    "ﬁnance ﬂow Ⅻ ½ ² ℃ №",
    "İstanbul Straße ΟΔΟΣ ǅ ß",
    "Ünïcödé façade: naïve café in Zürich — São Paulo, Kraków, Đà Nẵng.",
    "東京タワーは高さ333メートルの電波塔です。北京是中国的首都。",
    "한국어 문장과 ภาษาไทยไม่มีช่องว่าง และ हिन्दी वाक्य।",
    "עברית ועוד, العربية، Ελληνικά, русский текст.",
    "Emoji 🚀🔥 families 👨\u200d👩\u200d👧 flags 🇫🇷🇯🇵 skin 👍🏽 and math ∑ x² ≤ ∞.",
    "def score(chunks, query):\n    return [cosine(c, query) for c in chunks]  # code",
    "URLs like https://example.org/a?b=c&d=e#f and IDs such as INV-2024-00042, $1,234.56, 3.14e-10.",
    "...!!!???---***###",
    "\r\nWindows\r\nline\r\nendings\r\n",
    "A" * 3000,  # one 3,000-character word
    " ".join(f"word{i} supercalifragilistic" for i in range(200)),  # far past 256 word pieces
    "ünïcödé " * 200,  # truncated inside accented words
    "東京" * 400,  # truncated inside CJK characters (one piece each)
    "Paris is the capital of France. " * 40,
]
