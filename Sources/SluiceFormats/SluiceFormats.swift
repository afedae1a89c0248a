// SluiceFormats: The input readers, each streaming a file in bounded memory: CSV, text lines,
// JSON, the XML tokenizer and XLSX, and value parsing.
