// SluiceS3: A blocking S3 client on AsyncHTTPClient with a hand-written SigV4 signer, for the s3
// source.
