// SluiceParquet: The Parquet writer: typed row batches, column chunks, dictionaries, page
// compression, and the Thrift footer.
