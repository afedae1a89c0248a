import Foundation
import SluiceFormats
import SluiceSupport

/// JSON Lines read and picked on a thread of their own, a batch of lines at a time, while the
/// transform's thread turns the batch before into rows: reading, splitting and picking each
/// line (the most of a JSON Lines transform's work) then overlaps with typing the values.
/// The batches come back in the file's order; each holds its lines' text (for the lines that
/// go the whole `JSONValue` way: the schema sample, a line the picker did not take, a value
/// that does not convert) and, per picked line, where each slot's value is.
final class PickedLines: @unchecked Sendable {  // state guarded by `condition`: both sides wait on it
    /// What a slot held, by kind: 0 absent, 1 null, 2 true, 3 false, 4 a string and 5 a number
    /// in the line's text, 6 a decoded string or a nested value's JSON text in `owned`.
    struct Value {
        var kind: UInt8
        var offset: Int
        var length: Int
    }

    final class Batch {
        var text: [UInt8] = []
        var owned: [UInt8] = []
        /// 1-based line number, the line's place in `text`, and whether it was picked.
        var lines: [(number: Int, start: Int, length: Int, picked: Bool)] = []
        /// `slots` values for each picked line, in order.
        var values: [Value] = []
        var end = false

        func reset() {
            text.removeAll(keepingCapacity: true)
            owned.removeAll(keepingCapacity: true)
            lines.removeAll(keepingCapacity: true)
            values.removeAll(keepingCapacity: true)
            end = false
        }
    }

    static let linesPerBatch = 2048
    private let condition = NSCondition()
    private var spare: [Batch]
    private var filled: [Batch] = []
    private var stopped = false
    private var failure: (any Error)?
    private var job: BackgroundJob?

    /// The reader and the picker, handed over: from here on only the reading thread uses them.
    private struct Handover: @unchecked Sendable {
        let lines: TextLineReader
        let picker: JSONPicker
    }

    init(lines: TextLineReader, picker: JSONPicker, slots: Int) {
        spare = (0..<4).map { _ in Batch() }
        let handover = Handover(lines: lines, picker: picker)
        job = BackgroundJob { [self] in
            do {
                try produce(handover.lines, handover.picker, slots)
            } catch {
                condition.withLock {
                    failure = error
                    condition.broadcast()
                }
            }
        }
    }

    /// Stops the reader (after an error on the transform's side) and waits for it.
    func stop() {
        condition.withLock {
            stopped = true
            condition.broadcast()
        }
        try? job?.wait()
    }

    /// The next batch in file order (nil after the last); throws the reader's error.
    func next() throws -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        while filled.isEmpty && failure == nil { condition.wait() }
        if filled.isEmpty, let failure { throw failure }
        let batch = filled.removeFirst()
        return batch.end && batch.lines.isEmpty ? nil : batch
    }

    /// Hands a batch back to be filled again.
    func recycle(_ batch: Batch) {
        batch.reset()
        condition.withLock {
            spare.append(batch)
            condition.broadcast()
        }
    }

    private func produce(_ lines: TextLineReader, _ picker: JSONPicker, _ slots: Int) throws {
        var number = 0
        var done = false
        while !done {
            condition.lock()
            while spare.isEmpty && !stopped { condition.wait() }
            if stopped {
                condition.unlock()
                return
            }
            let batch = spare.removeLast()
            condition.unlock()
            while batch.lines.count < Self.linesPerBatch {
                let more = try lines.nextLine { line in
                    number += 1
                    if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
                    let start = batch.text.count
                    batch.text.append(contentsOf: line)
                    let document = UnsafeRawBufferPointer(line)
                    let picked = picker.pick(document)
                    batch.lines.append((number, start, line.count, picked))
                    guard picked, let base = document.baseAddress else { return }
                    for k in 0..<slots {
                        let value: Value = switch picker.picked(k) {
                        case .absent: Value(kind: 0, offset: 0, length: 0)
                        case .null: Value(kind: 1, offset: 0, length: 0)
                        case .bool(let b): Value(kind: b ? 2 : 3, offset: 0, length: 0)
                        case .string(let raw): Value(kind: 4, offset: start + (raw.baseAddress.map { $0 - base } ?? 0), length: raw.count)
                        case .number(let raw): Value(kind: 5, offset: start + (raw.baseAddress.map { $0 - base } ?? 0), length: raw.count)
                        case .owned(let i):
                            Value(kind: 6, offset: batch.owned.count, length: picker.owned[i].count)
                        }
                        if case .owned(let i) = picker.picked(k) { batch.owned.append(contentsOf: picker.owned[i]) }
                        batch.values.append(value)
                    }
                }
                if !more {
                    batch.end = true
                    done = true
                    break
                }
            }
            condition.withLock {
                filled.append(batch)
                condition.broadcast()
            }
        }
    }
}
