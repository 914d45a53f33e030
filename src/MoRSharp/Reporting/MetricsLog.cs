using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoRSharp.Reporting;

/// <summary>
/// An append-only JSON-lines metrics file (<c>metrics.jsonl</c>): one JSON object per line, each line written with a
/// single write and flushed, so a process killed mid-write leaves at most a truncated last line, which <see cref="Read"/>
/// ignores and the next <see cref="MetricsLog"/> opened on the file cuts off.
/// <para>
/// Values: <c>null</c>, <see cref="bool"/>, strings, all integer and floating-point types, <see cref="decimal"/>,
/// enums (by name), <see cref="DateTime"/>/<see cref="DateTimeOffset"/> (ISO 8601), <see cref="TimeSpan"/> (seconds),
/// <see cref="JsonNode"/>, nested dictionaries (<c>IReadOnlyDictionary&lt;string, object?&gt;</c> or
/// <c>IDictionary&lt;string, object?&gt;</c>) and arrays (any non-string <see cref="IEnumerable"/>). Numbers are written
/// with the invariant culture (round-trippable). A non-finite float is written as <c>null</c> plus a flag field
/// <c>"&lt;key&gt;_nonfinite"</c>: the string <c>"NaN"</c>, <c>"Infinity"</c> or <c>"-Infinity"</c> for a scalar, the array
/// of indices of the non-finite elements for an array.
/// </para>
/// </summary>
public sealed class MetricsLog : IDisposable
{
    /// <summary>The suffix of the flag field written beside a non-finite value.</summary>
    public const string NonFiniteSuffix = "_nonfinite";

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // keeps non-ASCII readable; still escapes control characters and quotes
        Indented = false,
        SkipValidation = false,
    };

    private readonly object gate = new();
    private readonly FileStream stream;
    private readonly ArrayBufferWriterStream buffer = new();
    private readonly bool durable;

    public string Path { get; }
    /// <summary>Lines appended through this instance.</summary>
    public long LinesWritten { get; private set; }

    /// <param name="path">The file; created (with its directory) if missing.</param>
    /// <param name="append">Keep existing lines (default); false starts the file afresh.</param>
    /// <param name="durable">fsync after each line (survives power loss, costs a disk sync per line); by default each line is flushed to the OS, which survives a killed process.</param>
    public MetricsLog(string path, bool append = true, bool durable = false)
    {
        Path = System.IO.Path.GetFullPath(path);
        this.durable = durable;
        var dir = System.IO.Path.GetDirectoryName(Path);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        stream = new FileStream(Path, append ? FileMode.OpenOrCreate : FileMode.Create, FileAccess.ReadWrite, FileShare.Read, 1, FileOptions.None);
        try
        {
            if (append) RepairTail();
            stream.Seek(0, SeekOrigin.End);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>A last line without its newline is cut off if it is not a complete JSON object (a killed writer), completed with a newline if it is.</summary>
    private void RepairTail()
    {
        long len = stream.Length;
        if (len == 0) return;
        var one = new byte[1];
        stream.Seek(len - 1, SeekOrigin.Begin);
        stream.ReadExactly(one);
        if (one[0] == (byte)'\n') return;
        // Find the start of the last line.
        const int chunk = 64 * 1024;
        long lineStart = 0;
        var buf = new byte[chunk];
        for (long end = len; end > 0;)
        {
            int n = (int)Math.Min(chunk, end);
            stream.Seek(end - n, SeekOrigin.Begin);
            stream.ReadExactly(buf, 0, n);
            int idx = Array.LastIndexOf(buf, (byte)'\n', n - 1, n);
            if (idx >= 0) { lineStart = end - n + idx + 1; break; }
            end -= n;
        }
        var tail = new byte[len - lineStart];
        stream.Seek(lineStart, SeekOrigin.Begin);
        stream.ReadExactly(tail);
        if (TryParseObject(Encoding.UTF8.GetString(tail)) is not null)
        {
            stream.Seek(0, SeekOrigin.End);
            stream.WriteByte((byte)'\n');
        }
        else stream.SetLength(lineStart);
        stream.Flush(flushToDisk: durable);
    }

    /// <summary>Appends one line (one JSON object with the fields in the dictionary's order) and flushes it.</summary>
    public void Append(IReadOnlyDictionary<string, object?> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(!stream.CanWrite, this);
            buffer.Reset();
            using (var w = new Utf8JsonWriter(buffer, WriterOptions))
            {
                WriteObject(w, fields);
            }
            buffer.WriteByte((byte)'\n');
            stream.Write(buffer.WrittenSpan);
            stream.Flush(flushToDisk: durable);
            LinesWritten++;
        }
    }

    /// <summary>The JSON line (without the newline) that <see cref="Append"/> would write for <paramref name="fields"/>.</summary>
    public static string Serialize(IReadOnlyDictionary<string, object?> fields)
    {
        var buf = new ArrayBufferWriterStream();
        using (var w = new Utf8JsonWriter(buf, WriterOptions)) WriteObject(w, fields);
        return Encoding.UTF8.GetString(buf.WrittenSpan);
    }

    public void Dispose()
    {
        lock (gate)
        {
            if (!stream.CanWrite) return;
            stream.Flush(flushToDisk: true);
            stream.Dispose();
        }
    }

    private static void WriteObject(Utf8JsonWriter w, IEnumerable<KeyValuePair<string, object?>> fields)
    {
        w.WriteStartObject();
        List<(string key, object flag)>? flags = null;
        foreach (var (key, value) in fields)
        {
            w.WritePropertyName(key);
            var flag = WriteValue(w, value);
            if (flag is not null) (flags ??= []).Add((key, flag));
        }
        if (flags is not null)
        {
            foreach (var (key, flag) in flags)
            {
                w.WritePropertyName(key + NonFiniteSuffix);
                if (flag is string s) w.WriteStringValue(s);
                else
                {
                    w.WriteStartArray();
                    foreach (var i in (List<int>)flag) w.WriteNumberValue(i);
                    w.WriteEndArray();
                }
            }
        }
        w.WriteEndObject();
    }

    private static string NonFiniteName(double d) => double.IsNaN(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";

    /// <summary>Writes a value; returns the non-finite flag (a name, or a list of array indices) or null.</summary>
    private static object? WriteValue(Utf8JsonWriter w, object? value)
    {
        switch (value)
        {
            case null: w.WriteNullValue(); return null;
            case string s: w.WriteStringValue(s); return null;
            case bool b: w.WriteBooleanValue(b); return null;
            case double d: return WriteDouble(w, d);
            case float f: return WriteFloat(w, f);
            case Half h: return WriteFloat(w, (float)h);
            case decimal m: w.WriteNumberValue(m); return null;
            case int i: w.WriteNumberValue(i); return null;
            case long l: w.WriteNumberValue(l); return null;
            case uint ui: w.WriteNumberValue(ui); return null;
            case ulong ul: w.WriteNumberValue(ul); return null;
            case short sh: w.WriteNumberValue(sh); return null;
            case ushort us: w.WriteNumberValue(us); return null;
            case byte by: w.WriteNumberValue(by); return null;
            case sbyte sb: w.WriteNumberValue(sb); return null;
            case nint ni: w.WriteNumberValue(ni); return null;
            case nuint nu: w.WriteNumberValue(nu); return null;
            case Int128 or UInt128: w.WriteRawValue(((IFormattable)value).ToString(null, CultureInfo.InvariantCulture)); return null;
            case char c: w.WriteStringValue(c.ToString()); return null;
            case Enum e: w.WriteStringValue(e.ToString()); return null;
            case DateTime dt: w.WriteStringValue(dt); return null;
            case DateTimeOffset dto: w.WriteStringValue(dto); return null;
            case TimeSpan ts: w.WriteNumberValue(ts.TotalSeconds); return null;
            case Guid g: w.WriteStringValue(g); return null;
            case JsonNode node: node.WriteTo(w); return null;
            case JsonElement el: el.WriteTo(w); return null;
            case IReadOnlyDictionary<string, object?> ro: WriteObject(w, ro); return null;
            case IDictionary<string, object?> dict: WriteObject(w, dict); return null;
            case IEnumerable seq:
            {
                List<int>? bad = null;
                int index = 0;
                w.WriteStartArray();
                foreach (var item in seq)
                {
                    if (WriteValue(w, item) is not null) (bad ??= []).Add(index);
                    index++;
                }
                w.WriteEndArray();
                return bad;
            }
            case IFormattable f: w.WriteStringValue(f.ToString(null, CultureInfo.InvariantCulture)); return null;
            default: w.WriteStringValue(value.ToString()); return null;
        }
    }

    private static string? WriteDouble(Utf8JsonWriter w, double d)
    {
        if (double.IsFinite(d)) { w.WriteNumberValue(d); return null; }
        w.WriteNullValue();
        return NonFiniteName(d);
    }

    private static string? WriteFloat(Utf8JsonWriter w, float f)
    {
        if (float.IsFinite(f)) { w.WriteNumberValue(f); return null; }
        w.WriteNullValue();
        return NonFiniteName(f);
    }

    private static JsonObject? TryParseObject(string line)
    {
        try
        {
            return JsonNode.Parse(line) as JsonObject;
        }
        catch (JsonException) { return null; }
    }

    /// <summary>
    /// All complete lines of a metrics file, in order. Blank lines are skipped; an unparseable <em>last</em> line (a
    /// process killed mid-write) is ignored; an unparseable line elsewhere is an <see cref="InvalidDataException"/> naming the line.
    /// A missing file is a <see cref="FileNotFoundException"/>.
    /// </summary>
    public static IReadOnlyList<JsonObject> Read(string path) => ReadLines(path).Select(l => l.obj).ToList();

    private static List<(string text, JsonObject obj)> ReadLines(string path)
    {
        string content;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        using (var reader = new StreamReader(fs, Encoding.UTF8))
            content = reader.ReadToEnd();
        var lines = content.Split('\n');
        // The index of the last non-blank line: the only one allowed to be broken.
        int last = lines.Length - 1;
        while (last >= 0 && string.IsNullOrWhiteSpace(lines[last])) last--;
        var result = new List<(string, JsonObject)>(lines.Length);
        for (int i = 0; i <= last; i++)
        {
            var text = lines[i].TrimEnd('\r');
            if (string.IsNullOrWhiteSpace(text)) continue;
            var obj = TryParseObject(text);
            if (obj is null)
            {
                if (i == last) break;
                throw new InvalidDataException($"{path}:{i + 1}: not a JSON object: {Shorten(text)}");
            }
            result.Add((text, obj));
        }
        return result;
    }

    private static string Shorten(string s) => s.Length <= 80 ? s : s[..77] + "...";

    /// <summary>The line's <c>"step"</c> as a number, or null when it has none (or it is not a number).</summary>
    public static double? StepOf(JsonObject line)
    {
        if (line["step"] is JsonValue v)
        {
            if (v.TryGetValue<long>(out var l)) return l;
            if (v.TryGetValue<double>(out var d)) return d;
            if (v.GetValueKind() == JsonValueKind.Number && double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out d)) return d;
        }
        return null;
    }

    /// <summary>
    /// Rewrites the file atomically (temp file + rename) keeping the lines whose <c>"step"</c> ≤ <paramref name="step"/>,
    /// and the lines with no step (run headers, notes) — used on resume so that the file matches the checkpoint. Kept lines
    /// are copied byte for byte; a truncated last line is dropped. A missing file is left missing. Returns the number of
    /// lines removed. Call it before opening a <see cref="MetricsLog"/> on the file (an open log would keep writing to the
    /// replaced file).
    /// </summary>
    public static int TruncateAfterStep(string path, long step)
    {
        if (!File.Exists(path)) return 0;
        var lines = ReadLines(path);
        var sb = new StringBuilder();
        int removed = 0;
        foreach (var (text, obj) in lines)
        {
            var s = StepOf(obj);
            if (s is { } v && v > step) { removed++; continue; }
            sb.Append(text).Append('\n');
        }
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(sb.ToString()));
        return removed;
    }

    /// <summary>A growable in-memory stream with access to the written bytes (avoids an array copy per line).</summary>
    private sealed class ArrayBufferWriterStream : MemoryStream
    {
        public ReadOnlySpan<byte> WrittenSpan => GetBuffer().AsSpan(0, (int)Length);
        public void Reset() => SetLength(0);
    }
}

/// <summary>Writes files atomically: a temporary file in the same directory, flushed to disk, then renamed over the target.</summary>
internal static class AtomicFile
{
    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        var full = System.IO.Path.GetFullPath(path);
        var dir = System.IO.Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = TempPathFor(full);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(content);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    public static string TempPathFor(string fullPath) =>
        System.IO.Path.Combine(System.IO.Path.GetDirectoryName(fullPath)!,
            $".{System.IO.Path.GetFileName(fullPath)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
