"""dinrec.layers."""
