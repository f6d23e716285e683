"""Short fixed texts for the tokenizer lesson: the same little story in English and in
Chinese (written for the course), and strings that test a tokenizer's edges."""

# The same three sentences in both languages, so token counts can be compared fairly.
ENGLISH_SAMPLE = ("Once upon a time, a little girl had a red ball. She played with it in the "
                  "garden every day. One day the ball rolled into the river, and her dog "
                  "brought it back.")

# Every Chinese character here takes 3 bytes in UTF-8, so a byte-level tokenizer must put
# multi-byte characters back together from pieces.
CHINESE_SAMPLE = ("从前，有一个小女孩，她有一个红色的球。她每天都在花园里和球一起玩。"
                  "有一天，球滚进了河里，她的小狗把球叼了回来。")

EMOJI_SAMPLE = "Tokens 🙂👍🏽 and flags 🇫🇷🇯🇵 and a family 👨‍👩‍👧 (4-byte characters joined by U+200D)."

WHITESPACE_SAMPLE = "a  b   c\n\n\n   indented\n\t\ttabs  \n \n    \r\n   trailing spaces   "
