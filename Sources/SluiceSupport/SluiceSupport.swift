// SluiceSupport: What every other module leans on and nothing above it: relative paths as bytes,
// system-call helpers, hex, raw buffers, globs, size and duration text, timestamps, and the
// concurrency kit (BlockingPool, parallelFor, BackgroundJob, SerialWorker, Waker).
