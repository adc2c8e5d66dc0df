"""dinrec.serving."""
