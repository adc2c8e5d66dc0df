"""Native (C) kernels for the hot element-wise parts of training, built on first use.

Everything here has a torch fallback elsewhere in dinrec; see build.py for how the kernels
are compiled, cached and switched off (DINREC_NATIVE_KERNELS=0).
"""
