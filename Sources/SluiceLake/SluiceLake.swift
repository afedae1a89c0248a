// SluiceLake: The versioned lake on a file system: staging files hashed while written, the no-
// clobber publish, folder fsyncs, lake names, and the background data sync.
