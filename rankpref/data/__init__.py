"""rankpref's data layer: readers into polars, preprocessing, splits and data modules."""
