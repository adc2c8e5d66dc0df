"""dinrec.cli."""
