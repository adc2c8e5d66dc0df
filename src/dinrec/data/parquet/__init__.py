"""How dinrec's sample Parquet files are written and what their footers tell a reader.

- write_options: the id storage type, codecs and encodings dinrec writes samples with.
- footers: files, row groups and column statistics read from the metadata alone.

The dataset directory (dinrec.data.dataset) and the streaming loader (dinrec.data.loader)
use both.
"""
