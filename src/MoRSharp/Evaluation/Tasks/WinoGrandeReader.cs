using MoRSharp.Data;

namespace MoRSharp.Evaluation.Tasks;

/// <summary>
/// WinoGrande: JSONL rows <c>{qID, sentence, option1, option2, answer}</c> (the sentence has one <c>_</c> blank) and a labels
/// file (one 1/2 per line, aligned with the rows). Partial scoring as lm-evaluation-harness: choice i's context is the
/// sentence up to the blank with option i substituted, and the scored continuation — the same for both choices — is the
/// text after the blank, stripped, joined with the delimiter " ". The harness reports only <c>acc</c> for this task.
/// When a row also has <c>answer</c>, it must agree with the labels file.
/// </summary>
public static class WinoGrandeReader
{
    public static string LabelsPathFor(string jsonl) => PiqaReader.LabelsPathFor(jsonl);

    public static IReadOnlyList<EvalItem> Read(string path, string? labelsPath = null)
    {
        labelsPath ??= LabelsPathFor(path);
        var rows = TaskFile.Jsonl(path).ToList();
        var labels = TaskFile.Labels(labelsPath, path, rows.Count, "1", "2");
        var items = new List<EvalItem>(rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            var (line, row) = rows[i];
            string sentence = TaskFile.String(row, "sentence", path, line);
            string o1 = TaskFile.String(row, "option1", path, line);
            string o2 = TaskFile.String(row, "option2", path, line);
            string id = row.ContainsKey("qID") ? TaskFile.String(row, "qID", path, line) : $"winogrande-{i}";
            if (row.ContainsKey("answer"))
            {
                string answer = TaskFile.String(row, "answer", path, line);
                if (answer != (labels[i] + 1).ToString())
                    throw new DataException($"{path}:{line}: field 'answer' is '{answer}' but {labelsPath}:{line} says '{labels[i] + 1}'");
            }
            var (contexts, continuation) = Split(sentence, o1, o2, path, line);
            items.Add(new EvalItem(id, contexts, [continuation], labels[i], $"{path}:{line}"));
        }
        return items;
    }

    /// <summary>The harness' <c>partial_context</c> for each option and <c>partial_target</c>.</summary>
    public static (string[] Contexts, string Continuation) Split(string sentence, string option1, string option2, string path = "winogrande", int line = 0)
    {
        int blank = sentence.IndexOf('_');
        if (blank < 0) throw new DataException($"{path}:{line}: field 'sentence': no '_' blank to fill");
        string continuation = sentence[(blank + 1)..].Trim();
        if (continuation.Length == 0) throw new DataException($"{path}:{line}: field 'sentence': nothing after the blank to score");
        return ([sentence[..blank] + option1, sentence[..blank] + option2], continuation);
    }
}
