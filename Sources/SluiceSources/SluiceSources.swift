// SluiceSources: One file per source type (folder with its inotify watcher, sftp, s3, http
// uploads), each a SourceType registered once in SourceTypes.all.
