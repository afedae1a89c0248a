// SluiceTransform: From a stored version to typed Parquet or JSON Lines: mapping files, field
// converters, the transformer per input format, row sinks, atomic outputs, and early transforms.
