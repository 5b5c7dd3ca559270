"""Regional collections: the downloads built from every entry's latest good output (no Dagster here).

`areas.py` (the machine's nine areas and membership rules), `licences.py` (an entry's licence, attribution and
share-alike flag), `inputs.py` (which entries go in), `features.py` (reading stored outputs in blocks),
`classic.py` (the classic address CSV and the 0.1° summary), `texts.py` (README.txt, LICENSE.txt),
`zip_stream.py` and `geoparquet.py` (the two files, streamed), `publish.py` (temporary keys, final names, record
last), `build.py` (one area and layer, both licence classes, with change detection), `keys.py` (store keys).
The Dagster asset is `oa_dagster/assets/collections.py`.
"""
