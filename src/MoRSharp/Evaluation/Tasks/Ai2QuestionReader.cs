using MoRSharp.Data;

namespace MoRSharp.Evaluation.Tasks;

/// <summary>
/// AI2's question JSONL (ARC-Easy, ARC-Challenge, OpenBookQA): <c>{id, question: {stem, choices: [{text, label}]}, answerKey}</c>.
/// Labels are usually A–D but some ARC items use 1–4 or have 3 or 5 choices. The choices are the choice texts, the gold
/// index is the position of <c>answerKey</c> among the labels, the delimiter is " ". The prompt differs per task
/// (lm-evaluation-harness): ARC <c>"Question: {stem}\nAnswer:"</c>, OpenBookQA the bare stem.
/// </summary>
public static class Ai2QuestionReader
{
    public static string ArcPrompt(string stem) => $"Question: {stem}\nAnswer:";

    public static string BarePrompt(string stem) => stem;

    public static IReadOnlyList<EvalItem> Read(string path, Func<string, string> prompt)
    {
        var items = new List<EvalItem>();
        foreach (var (line, row) in TaskFile.Jsonl(path))
        {
            string id = TaskFile.String(row, "id", path, line);
            var question = TaskFile.Object(row, "question", path, line);
            string stem = TaskFile.String(question, "question.stem", path, line);
            var choices = TaskFile.Array(question, "question.choices", path, line);
            if (choices.Count < 2) throw new DataException($"{path}:{line}: field 'question.choices': expected at least 2 choices, got {choices.Count}");
            var texts = new string[choices.Count];
            var labels = new string[choices.Count];
            for (int j = 0; j < choices.Count; j++)
            {
                var c = choices[j] as System.Text.Json.Nodes.JsonObject
                        ?? throw new DataException($"{path}:{line}: field 'question.choices[{j}]': expected an object");
                texts[j] = TaskFile.String(c, $"question.choices[{j}].text", path, line);
                labels[j] = TaskFile.String(c, $"question.choices[{j}].label", path, line);
            }
            // OpenBookQA's harness config strips leading spaces of answerKey; harmless for ARC.
            string key = TaskFile.String(row, "answerKey", path, line).TrimStart();
            int gold = Array.IndexOf(labels, key);
            if (gold < 0)
                throw new DataException($"{path}:{line}: field 'answerKey': '{key}' is not one of the choice labels {string.Join(", ", labels)}");
            items.Add(new EvalItem(id, [prompt(stem)], texts, gold, $"{path}:{line}"));
        }
        return items;
    }
}
