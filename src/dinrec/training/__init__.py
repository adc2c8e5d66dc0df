"""dinrec.training."""
