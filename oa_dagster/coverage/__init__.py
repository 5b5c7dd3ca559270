"""Coverage of the stored catalog: where sources are, what they cover, and the machine's maps (no Dagster).

`report.compute_coverage` reads the store and places every source (`matching`), counts per country, US state and
county (`regions`), lists lost entries (`lost_sources`); `report.write_coverage` writes the files and
`maps.render_map` draws the PNGs from `render-world.geojson`, on the bundled boundaries (`boundaries`, `data/`),
each with its key (`legend`).
"""
