using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Data;

namespace MoRSharp.Evaluation.Tasks;

/// <summary>
/// Reading helpers shared by the task readers. Every error is a <see cref="DataException"/> whose message starts with
/// <c>file:line</c> and names the field and what was expected.
/// </summary>
internal static class TaskFile
{
    /// <summary>The file's path, or a clear error when it is missing.</summary>
    public static string Require(string path, string what)
    {
        if (!File.Exists(path)) throw new DataException($"{path}: {what} not found (is --data-dir the shared eval folder?)");
        return path;
    }

    /// <summary>The lines of a UTF-8 text file (LF or CRLF), numbered from 1.</summary>
    public static string[] Lines(string path) => File.ReadAllLines(Require(path, "data file"));

    /// <summary>Each line of a JSONL file as an object with its 1-based line number. Empty lines are errors: labels files are aligned by line.</summary>
    public static IEnumerable<(int Line, JsonObject Row)> Jsonl(string path)
    {
        var lines = Lines(path);
        for (int i = 0; i < lines.Length; i++)
        {
            int line = i + 1;
            if (string.IsNullOrWhiteSpace(lines[i])) throw new DataException($"{path}:{line}: empty line (expected one JSON object per line)");
            JsonNode? node;
            try { node = JsonNode.Parse(lines[i]); }
            catch (JsonException e) { throw new DataException($"{path}:{line}: not valid JSON ({e.Message})", e); }
            if (node is not JsonObject row) throw new DataException($"{path}:{line}: expected a JSON object, got {Kind(node)}");
            yield return (line, row);
        }
    }

    public static string String(JsonObject row, string field, string path, int line) =>
        Get(row, field, path, line) is JsonValue v && v.GetValueKind() == JsonValueKind.String
            ? v.GetValue<string>()
            : throw Expected(row, field, "a string", path, line);

    public static JsonObject Object(JsonObject row, string field, string path, int line) =>
        Get(row, field, path, line) as JsonObject ?? throw Expected(row, field, "an object", path, line);

    public static JsonArray Array(JsonObject row, string field, string path, int line) =>
        Get(row, field, path, line) as JsonArray ?? throw Expected(row, field, "an array", path, line);

    private static DataException Expected(JsonObject row, string field, string what, string path, int line) =>
        new($"{path}:{line}: field '{field}': expected {what}, got {Kind(Get(row, field, path, line))}");

    private static JsonNode? Get(JsonObject row, string field, string path, int line)
    {
        string name = field[(field.LastIndexOf('.') + 1)..];
        int bracket = name.IndexOf('[');
        if (bracket >= 0) name = name[..bracket];
        return row.TryGetPropertyValue(name, out var node) ? node : throw new DataException($"{path}:{line}: field '{field}' is missing");
    }

    private static string Kind(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => v.GetValueKind().ToString().ToLowerInvariant(),
        },
        _ => "something else",
    };

    /// <summary>
    /// A labels file aligned line by line with <paramref name="dataPath"/>: exactly <paramref name="rows"/> lines, each one of
    /// <paramref name="allowed"/>. Returns the index of each label in <paramref name="allowed"/>.
    /// </summary>
    public static int[] Labels(string labelsPath, string dataPath, int rows, params string[] allowed)
    {
        if (!File.Exists(labelsPath)) throw new DataException($"{labelsPath}: labels file not found (it holds the answers for {dataPath})");
        var lines = File.ReadAllLines(labelsPath);
        if (lines.Length != rows)
            throw new DataException($"{labelsPath}: {lines.Length} labels for {rows} rows in {dataPath} (the files must be aligned line by line)");
        var result = new int[rows];
        for (int i = 0; i < rows; i++)
        {
            int k = System.Array.IndexOf(allowed, lines[i].Trim());
            if (k < 0) throw new DataException($"{labelsPath}:{i + 1}: label '{lines[i]}' is not one of {string.Join(", ", allowed)}");
            result[i] = k;
        }
        return result;
    }
}
