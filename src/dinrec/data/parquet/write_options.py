"""How dinrec writes its sample Parquet files: id storage type, codecs and encodings.

Chosen for the streaming loader's read speed (bench/loader_throughput.py): Arrow's decode of
the history lists is most of a loader's time. Readers need none of this: the codec and the
encoding are stored per column chunk and the types in the schema, so files written with other
settings (older dinrec: int64, zstd, dictionary lists) read the same.
"""

from __future__ import annotations

import pyarrow as pa


def id_storage_type(bound: int) -> pa.DataType:
    """The Parquet type encoded ids are stored as, given that every id is below `bound`:
    int32 when bound <= 2**31 - 1 (conservatively), else int64.

    Encoded ids are vocabulary indices, so they fit int32 unless a table has 2**31 rows.
    Stored narrow, Arrow decodes half the bytes (the streaming loader's main cost: 1.42M ->
    1.85M decoded rows per CPU-second at maxlen 50); every reader widens them back, so
    features are int64 wherever dinrec hands them out (to_numpy, ParquetBatchLoader).
    """
    return pa.int32() if bound < 2**31 else pa.int64()


def parquet_dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns written with dictionary encoding: every column but the history lists.

    The lists are stored PLAIN (lz4-compressed): with int32 ids, Arrow decodes them ~1.75x
    faster than dictionary pages (the dictionary gather was a third of the decode) for a
    file ~20% larger (1M rows, maxlen 50: 110 -> 131 MiB).
    """
    return [f.name for f in schema
            if not (pa.types.is_list(f.type) or pa.types.is_large_list(f.type))]


def parquet_compression(schema: pa.Schema) -> dict[str, str]:
    """Codec per Parquet leaf column: lz4 for list columns, zstd for the rest.

    The history lists are almost all of a sample's bytes and of the streaming loader's decode
    time; Arrow decodes lz4 pages ~12% faster than zstd (2M rows, maxlen 50,
    bench/loader_throughput.py) for files ~20% larger. Readers need nothing: the codec is
    stored per column chunk, so files written with zstd everywhere still read the same.
    """
    codecs: dict[str, str] = {}
    for field in schema:
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            # Leaf path of a list column in Parquet's compliant nested layout.
            codecs[f"{field.name}.list.element"] = "lz4"
        else:
            codecs[field.name] = "zstd"
    return codecs
