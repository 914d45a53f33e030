namespace MoRSharp.Evaluation.Tasks;

/// <summary>
/// PIQA: JSONL rows <c>{goal, sol1, sol2}</c> and a labels file (one 0/1 per line, aligned with the rows; 0 = sol1).
/// As lm-evaluation-harness: context <c>"Question: {goal}\nAnswer:"</c>, choices [sol1, sol2], delimiter " ".
/// </summary>
public static class PiqaReader
{
    /// <summary><c>valid_900.jsonl</c> → <c>valid_900-labels.lst</c> (the official release's naming).</summary>
    public static string LabelsPathFor(string jsonl) =>
        Path.Combine(Path.GetDirectoryName(jsonl) ?? "", Path.GetFileNameWithoutExtension(jsonl) + "-labels.lst");

    public static IReadOnlyList<EvalItem> Read(string path, string? labelsPath = null)
    {
        var rows = TaskFile.Jsonl(path).ToList();
        var labels = TaskFile.Labels(labelsPath ?? LabelsPathFor(path), path, rows.Count, "0", "1");
        return rows.Select((r, i) =>
        {
            string goal = TaskFile.String(r.Row, "goal", path, r.Line);
            string sol1 = TaskFile.String(r.Row, "sol1", path, r.Line);
            string sol2 = TaskFile.String(r.Row, "sol2", path, r.Line);
            return new EvalItem($"piqa-{i}", [$"Question: {goal}\nAnswer:"], [sol1, sol2], labels[i], $"{path}:{r.Line}");
        }).ToList();
    }
}
