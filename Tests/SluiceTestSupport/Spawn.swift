import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a spawned process's standard stream goes.
package enum SpawnedStream {
    case devNull
    /// Appended to the file (created when missing).
    case append(String)
    /// The file, emptied first (created when missing).
    case truncate(String)
    /// The same as standard output.
    case stdout
}

/// Starts `words[0]` with the arguments `words[1...]` and standard input from /dev/null, and
/// returns its pid. The caller reaps it (`waitpid`): Foundation's Process reaper can block in
/// wait4() on a long-lived child and stall every other Process of the test run.
package func spawnProcess(_ words: [String], stdout: SpawnedStream, stderr: SpawnedStream,
                          environment: [String: String] = ProcessInfo.processInfo.environment) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    for (fd, target) in [(Int32(1), stdout), (Int32(2), stderr)] {
        switch target {
        case .devNull: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
        case .append(let path): posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        case .truncate(let path): posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        case .stdout: posix_spawn_file_actions_adddup2(&actions, 1, fd)
        }
    }
    let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { envp.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, words[0], &actions, nil, argv, envp)
    guard rc == 0 else { throw TestFailure("cannot start \(words[0]): \(String(cString: strerror(rc)))") }
    return pid
}
