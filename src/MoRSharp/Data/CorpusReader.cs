using System.Text;
using System.Text.Json;
using Parquet;
using Parquet.Schema;

namespace MoRSharp.Data;

/// <summary>Input file formats, chosen by extension.</summary>
public enum CorpusFormat
{
    /// <summary><c>.txt</c>: documents separated by blank lines, or one document per file.</summary>
    Text,
    /// <summary><c>.jsonl</c>: one JSON object per line, the document in a string field.</summary>
    Jsonl,
    /// <summary><c>.parquet</c>: the document in a string (or binary UTF-8) column, read one row group at a time.</summary>
    Parquet,
}

/// <summary>One input file of a corpus.</summary>
public sealed record CorpusFile(string Path, CorpusFormat Format, long Bytes);

/// <summary>How a <see cref="CorpusReader"/> turns files into documents.</summary>
public sealed record CorpusOptions
{
    /// <summary>JSONL: the string field holding the document (<c>--field</c>).</summary>
    public string JsonlField { get; init; } = "text";
    /// <summary>Parquet: the column holding the document (<c>--column</c>).</summary>
    public string ParquetColumn { get; init; } = "text";
    /// <summary>Text files: each file is one document (default: documents are separated by blank lines).</summary>
    public bool DocumentPerFile { get; init; }
    /// <summary>JSONL: skip (and count) lines that are not JSON objects with the string field, instead of failing.</summary>
    public bool SkipBadLines { get; init; }
    /// <summary>Longer text documents are handed out in pieces of about this many characters, split after a line break,
    /// so memory stays bounded (a single line is never split).</summary>
    public int MaxChunkChars { get; init; } = 1 << 20;
}

/// <summary>
/// A piece of a document. Most documents come as one chunk (<see cref="IsDocumentStart"/> and <see cref="IsDocumentEnd"/>
/// both true); text documents longer than <see cref="CorpusOptions.MaxChunkChars"/> come as several, split after a
/// line break, and concatenating them gives the document.
/// </summary>
/// <param name="Text">The text (never empty).</param>
/// <param name="IsDocumentStart">First chunk of a document.</param>
/// <param name="IsDocumentEnd">Last chunk of a document.</param>
/// <param name="File">Source file.</param>
/// <param name="Line">1-based line (text, JSONL) or row (Parquet) where the document starts.</param>
public readonly record struct CorpusChunk(string Text, bool IsDocumentStart, bool IsDocumentEnd, string File, long Line);

/// <summary>
/// Streams documents from <c>.txt</c>, <c>.jsonl</c> and <c>.parquet</c> files and folders (searched recursively; files are
/// taken in ordinal order of their full paths, so the document order — and everything derived from it — is deterministic).
/// Never holds more than one document (or chunk, or Parquet row group) in memory.
/// </summary>
/// <remarks>
/// <para>Text is decoded as UTF-8 (a UTF-8 BOM is skipped); bytes that are not valid UTF-8 are replaced with U+FFFD and
/// counted in <see cref="ReplacedBytes"/>. Line ends (<c>\n</c>, <c>\r\n</c>) become <c>\n</c> and a file's final line break
/// is dropped. Parquet string columns are decoded by Parquet.Net (its replacements are not counted); binary columns are
/// decoded here and counted.</para>
/// <para>Empty and whitespace-only documents are skipped and counted in <see cref="EmptyDocuments"/>; null Parquet
/// values count as empty.</para>
/// </remarks>
public sealed class CorpusReader
{
    private static readonly string[] Extensions = [".txt", ".jsonl", ".parquet"];
    private readonly CountingUtf8Fallback _fallback = new();
    private readonly Encoding _utf8;
    private readonly List<string> _badLineExamples = [];
    private long _bytesDone;
    private CountingStream? _current;
    private long _parquetRead;

    public CorpusOptions Options { get; }
    /// <summary>The input files, in reading order.</summary>
    public IReadOnlyList<CorpusFile> Files { get; }
    /// <summary>Sum of the input files' sizes.</summary>
    public long TotalBytes { get; }
    /// <summary>Bytes read so far in the current pass (approximate within a read buffer; for Parquet, per row group).</summary>
    public long BytesRead => _bytesDone + (_current?.BytesRead ?? _parquetRead);
    /// <summary>The file being read, or null.</summary>
    public string? CurrentFile { get; private set; }
    /// <summary>Bytes that were not valid UTF-8 and were replaced with U+FFFD (current pass).</summary>
    public long ReplacedBytes => _fallback.ReplacedBytes;
    /// <summary>JSONL lines skipped because of <see cref="CorpusOptions.SkipBadLines"/> (current pass).</summary>
    public long SkippedLines { get; private set; }
    /// <summary>The first few skipped lines' error messages.</summary>
    public IReadOnlyList<string> BadLineExamples => _badLineExamples;
    /// <summary>Empty or whitespace-only documents skipped (current pass).</summary>
    public long EmptyDocuments { get; private set; }
    /// <summary>Documents handed out (current pass).</summary>
    public long Documents { get; private set; }

    /// <summary>Resolves the inputs (files or folders) to the list of files.</summary>
    /// <exception cref="DataException">An input does not exist, a file has an unsupported extension, or no input file was found.</exception>
    public CorpusReader(IEnumerable<string> inputs, CorpusOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        Options = options ?? new CorpusOptions();
        if (Options.MaxChunkChars < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxChunkChars must be positive");
        var enc = (Encoding)new UTF8Encoding(encoderShouldEmitUTF8Identifier: true).Clone();
        enc.DecoderFallback = _fallback;
        _utf8 = enc;
        Files = Resolve(inputs.ToList());
        TotalBytes = Files.Sum(f => f.Bytes);
    }

    /// <summary>The format of <paramref name="path"/> by its extension, or null.</summary>
    public static CorpusFormat? FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".txt" => CorpusFormat.Text,
        ".jsonl" => CorpusFormat.Jsonl,
        ".parquet" => CorpusFormat.Parquet,
        _ => null,
    };

    private static List<CorpusFile> Resolve(List<string> inputs)
    {
        if (inputs.Count == 0) throw new DataException("no input given: pass at least one file or folder of .txt, .jsonl or .parquet files");
        var files = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var input in inputs)
        {
            string full = Path.GetFullPath(input);
            if (File.Exists(full))
            {
                if (FormatOf(full) is null)
                    throw new DataException($"{input}: unsupported file type '{Path.GetExtension(full)}' (supported: {string.Join(", ", Extensions)})");
                if (seen.Add(full)) files.Add(full);
            }
            else if (Directory.Exists(full))
            {
                var found = Directory.EnumerateFiles(full, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = false, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System })
                    .Where(f => FormatOf(f) is not null)
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (found.Count == 0)
                    throw new DataException($"{input}: no {string.Join(", ", Extensions)} files in this folder (searched recursively)");
                foreach (var f in found) if (seen.Add(f)) files.Add(f);
            }
            else
            {
                throw new DataException($"{input}: input not found (no such file or folder)");
            }
        }
        return files.Select(f => new CorpusFile(f, FormatOf(f)!.Value, new FileInfo(f).Length)).ToList();
    }

    /// <summary>Whole documents (chunks joined); convenient for small corpora and tests. Prefer <see cref="ReadChunks"/> for large ones.</summary>
    public IEnumerable<string> ReadDocuments()
    {
        var sb = new StringBuilder();
        foreach (var c in ReadChunks())
        {
            if (c.IsDocumentStart && c.IsDocumentEnd)
            {
                yield return c.Text;
                continue;
            }
            if (c.IsDocumentStart) sb.Clear();
            sb.Append(c.Text);
            if (c.IsDocumentEnd) yield return sb.ToString();
        }
    }

    /// <summary>Streams the corpus as chunks (see <see cref="CorpusChunk"/>). Each call starts a new pass and resets the counters.</summary>
    /// <exception cref="DataException">A bad JSONL line (without <see cref="CorpusOptions.SkipBadLines"/>), a missing or
    /// non-string Parquet column, or an unreadable Parquet file; the message names the file and line/column.</exception>
    public IEnumerable<CorpusChunk> ReadChunks()
    {
        _bytesDone = 0;
        _fallback.ReplacedBytes = 0;
        SkippedLines = 0;
        EmptyDocuments = 0;
        Documents = 0;
        _badLineExamples.Clear();
        foreach (var file in Files)
        {
            CurrentFile = file.Path;
            var chunks = file.Format switch
            {
                CorpusFormat.Text => ReadText(file.Path),
                CorpusFormat.Jsonl => ReadJsonl(file.Path),
                _ => ReadParquet(file.Path),
            };
            foreach (var c in chunks)
            {
                if (c.IsDocumentEnd) Documents++;
                yield return c;
            }
            _bytesDone += file.Bytes;
            _current = null;
            _parquetRead = 0;
        }
        CurrentFile = null;
    }

    private StreamReader OpenText(string path)
    {
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        _current = new CountingStream(fs);
        return new StreamReader(_current, _utf8, detectEncodingFromByteOrderMarks: false, bufferSize: 1 << 16);
    }

    private IEnumerable<CorpusChunk> ReadText(string path)
    {
        using var reader = OpenText(path);
        var sb = new StringBuilder();
        bool started = false;       // a chunk of the current document has been handed out
        long docLine = 0, lineNo = 0;
        bool perFile = Options.DocumentPerFile;
        int max = Options.MaxChunkChars;
        int pendingBlank = 0;       // per-file mode: blank lines not yet appended (so trailing blank lines can be dropped)
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNo++;
            bool blank = string.IsNullOrWhiteSpace(line);
            if (blank && !perFile)
            {
                if (sb.Length > 0 || started)
                {
                    var end = Finish(sb, started, path, docLine);
                    if (end is not null) yield return end.Value;
                    started = false;
                }
                continue;
            }
            if (blank && sb.Length == 0 && !started) continue;   // leading blank lines of a per-file document
            if (blank)
            {
                pendingBlank++;
                continue;
            }
            if (sb.Length == 0 && !started) docLine = lineNo;
            if (sb.Length > 0 && sb.Length + pendingBlank + line.Length > max)
            {
                sb.Append('\n');
                yield return new CorpusChunk(sb.ToString(), !started, false, path, docLine);
                started = true;
                sb.Clear();
                for (; pendingBlank > 0; pendingBlank--) sb.Append('\n');
            }
            else if (sb.Length > 0)
            {
                sb.Append('\n');
                for (; pendingBlank > 0; pendingBlank--) sb.Append('\n');
            }
            pendingBlank = 0;
            sb.Append(line);
        }
        if (sb.Length > 0 || started)
        {
            var end = Finish(sb, started, path, docLine);
            if (end is not null) yield return end.Value;
        }
        else if (perFile)
        {
            EmptyDocuments++;   // an empty or whitespace-only file
        }
    }

    /// <summary>The last chunk of a text document, or null if the document is empty (counted).</summary>
    private CorpusChunk? Finish(StringBuilder sb, bool started, string path, long docLine)
    {
        string text = sb.ToString();
        sb.Clear();
        if (started)
        {
            // the document already has chunks: the last one may be empty only if the split fell on the document's end,
            // which cannot happen (a split happens only when a further line follows); keep the invariant "never empty"
            return new CorpusChunk(text.Length > 0 ? text : "\n", false, true, path, docLine);
        }
        if (string.IsNullOrWhiteSpace(text))
        {
            EmptyDocuments++;
            return null;
        }
        return new CorpusChunk(text, true, true, path, docLine);
    }

    private IEnumerable<CorpusChunk> ReadJsonl(string path)
    {
        using var reader = OpenText(path);
        string field = Options.JsonlField;
        long lineNo = 0;
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string? text = null;
            string? error = null;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) error = $"expected a JSON object, got {Kind(root.ValueKind)}";
                else if (!root.TryGetProperty(field, out var value))
                {
                    var names = root.EnumerateObject().Select(p => p.Name).ToList();
                    error = $"no field '{field}' (the object has {(names.Count == 0 ? "no fields" : "fields: " + string.Join(", ", names))}; use --field NAME)";
                }
                else if (value.ValueKind != JsonValueKind.String) error = $"field '{field}' is {Kind(value.ValueKind)}, expected a string";
                else text = value.GetString();
            }
            catch (JsonException e)
            {
                error = $"not valid JSON ({FirstSentence(e.Message)})";
            }
            catch (InvalidOperationException e)
            {
                error = $"field '{field}' cannot be read as a string ({e.Message})";
            }
            if (error is not null)
            {
                string message = $"{path}:{lineNo}: {error}";
                if (!Options.SkipBadLines) throw new DataException(message + " (use --skip-bad-lines to skip such lines)");
                SkippedLines++;
                if (_badLineExamples.Count < 5) _badLineExamples.Add(message);
                continue;
            }
            if (string.IsNullOrWhiteSpace(text))
            {
                EmptyDocuments++;
                continue;
            }
            yield return new CorpusChunk(text!, true, true, path, lineNo);
        }
    }

    private static string Kind(JsonValueKind k) => MoRSharp.Config.ConfigJson.Describe(k);

    private static string FirstSentence(string message)
    {
        int i = message.IndexOf(". ", StringComparison.Ordinal);
        return i > 0 ? message[..(i + 1)] : message;
    }

    private IEnumerable<CorpusChunk> ReadParquet(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        ParquetReader reader;
        try
        {
            reader = ParquetReader.CreateAsync(fs, leaveStreamOpen: true).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is not DataException)
        {
            throw new DataException($"{path}: cannot read as Parquet ({e.Message})", e);
        }
        try
        {
            string column = Options.ParquetColumn;
            var topLevel = reader.Schema.Fields;
            var field = topLevel.FirstOrDefault(f => f.Name == column);
            if (field is null)
                throw new DataException($"{path}: no column '{column}' (columns: {string.Join(", ", topLevel.Select(Describe))}; use --column NAME)");
            if (field is not DataField df)
                throw new DataException($"{path}: column '{column}' is a nested {field.SchemaType} field, expected a string column");
            bool isString = df.ClrType == typeof(ReadOnlyMemory<char>) || df.ClrType == typeof(string);
            bool isBinary = df.ClrType == typeof(ReadOnlyMemory<byte>) || df.ClrType == typeof(byte[]);
            if (df.IsArray || !(isString || isBinary))
                throw new DataException($"{path}: column '{column}' holds {(df.IsArray ? "lists of " : "")}{TypeName(df.ClrType)}, expected a string (UTF-8) or binary column");

            long fileLength = fs.Length;
            int groups = reader.RowGroupCount;
            long row = 0;
            for (int g = 0; g < groups; g++)
            {
                string?[] texts;
                using (var rg = reader.OpenRowGroupReader(g))
                {
                    if (rg.RowCount > Array.MaxLength) throw new DataException($"{path}: row group {g} has {rg.RowCount} rows, too many to read at once");
                    texts = new string?[rg.RowCount];
                    try
                    {
                        if (isString)
                        {
                            rg.ReadAsync(df, texts.AsMemory()!, null).AsTask().GetAwaiter().GetResult();
                        }
                        else
                        {
                            var raw = new byte[]?[rg.RowCount];
                            rg.ReadAsync(df, raw.AsMemory(), null).AsTask().GetAwaiter().GetResult();
                            for (int i = 0; i < raw.Length; i++) texts[i] = raw[i] is { } r ? DecodeBytes(r) : null;
                        }
                    }
                    catch (Exception e) when (e is not DataException)
                    {
                        throw new DataException($"{path}: cannot read column '{column}' of row group {g} ({e.Message})", e);
                    }
                }
                for (int i = 0; i < texts.Length; i++)
                {
                    row++;
                    string? t = texts[i];
                    texts[i] = null;
                    if (string.IsNullOrWhiteSpace(t))
                    {
                        EmptyDocuments++;
                        continue;
                    }
                    yield return new CorpusChunk(t, true, true, path, row);
                }
                _parquetRead = fileLength * (g + 1) / Math.Max(1, groups);
            }
        }
        finally
        {
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    private static string Describe(Field f) => f is DataField d ? $"{f.Name} ({TypeName(d.ClrType)}{(d.IsArray ? "[]" : "")})" : $"{f.Name} ({f.SchemaType})";

    private static string TypeName(Type t) =>
        t == typeof(ReadOnlyMemory<char>) ? "string" : t == typeof(ReadOnlyMemory<byte>) ? "binary" : t.Name;

    /// <summary>UTF-8 → string with U+FFFD for invalid sequences (one per maximal invalid subsequence), counting the replaced bytes.</summary>
    private string DecodeBytes(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return Encoding.UTF8.GetString(bytes);
        var sb = new StringBuilder(bytes.Length);
        Span<char> buf = stackalloc char[2];
        while (!bytes.IsEmpty)
        {
            var status = Rune.DecodeFromUtf8(bytes, out var rune, out int consumed);
            if (status == System.Buffers.OperationStatus.Done) sb.Append(buf[..rune.EncodeToUtf16(buf)]);
            else
            {
                sb.Append('\uFFFD');
                _fallback.ReplacedBytes += consumed;
            }
            bytes = bytes[consumed..];
        }
        return sb.ToString();
    }

    /// <summary>Replaces each invalid UTF-8 sequence with one U+FFFD and counts its bytes.</summary>
    private sealed class CountingUtf8Fallback : DecoderFallback
    {
        public long ReplacedBytes;
        public override int MaxCharCount => 1;
        public override DecoderFallbackBuffer CreateFallbackBuffer() => new Buffer(this);

        private sealed class Buffer(CountingUtf8Fallback owner) : DecoderFallbackBuffer
        {
            private int _remaining;
            public override int Remaining => _remaining;

            public override bool Fallback(byte[] bytesUnknown, int index)
            {
                owner.ReplacedBytes += bytesUnknown.Length;
                _remaining = 1;
                return true;
            }

            public override char GetNextChar()
            {
                if (_remaining <= 0) return '\0';
                _remaining--;
                return '\uFFFD';
            }

            public override bool MovePrevious()
            {
                if (_remaining >= 1) return false;
                _remaining++;
                return true;
            }

            public override void Reset() => _remaining = 0;
        }
    }

    /// <summary>A read-only pass-through stream that counts the bytes read.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long BytesRead;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => inner.Length;
        public override long Position { get => BytesRead; set => throw new NotSupportedException(); }
        public override void Flush() { }

        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = inner.Read(buffer, offset, count);
            BytesRead += n;
            return n;
        }

        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            BytesRead += n;
            return n;
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
