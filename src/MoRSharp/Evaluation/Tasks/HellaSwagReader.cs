using System.Globalization;
using System.Text.RegularExpressions;
using MoRSharp.Data;

namespace MoRSharp.Evaluation.Tasks;

/// <summary>
/// HellaSwag in the llama.cpp-style text export (<c>hellaswag_val_2000.txt</c>): 6 lines per item —
/// <c>activity_label: ctx</c>, the gold ending index (0–3), then the 4 endings.
/// <para>As lm-evaluation-harness: the context is the whole first line (the activity label prefix stays, as in the harness'
/// <c>query = preprocess(activity_label + ": " + ctx)</c>), the choices are the endings, the delimiter is " ", and both go
/// through the harness' <c>preprocess</c> (strip, <c>" [title]"</c> → <c>". "</c>, drop <c>[…]</c>, collapse double spaces) —
/// a no-op on this export, which already applied it. One difference cannot be undone: the harness capitalises <c>ctx_b</c>
/// (the text after the last sentence of the context, e.g. "he" → "He"); the export keeps <c>ctx_a + " " + ctx_b</c> as one
/// string, so the context here has the original lower case.</para>
/// </summary>
public static partial class HellaSwagReader
{
    public const int LinesPerItem = 6;

    public static IReadOnlyList<EvalItem> Read(string path)
    {
        var lines = TaskFile.Lines(path);
        if (lines.Length % LinesPerItem != 0)
        {
            int start = lines.Length / LinesPerItem * LinesPerItem;
            throw new DataException($"{path}:{start + 1}: incomplete item: {lines.Length - start} of {LinesPerItem} lines " +
                                    "(an item is: activity_label: ctx, label 0–3, then 4 endings)");
        }
        var items = new List<EvalItem>(lines.Length / LinesPerItem);
        for (int s = 0; s < lines.Length; s += LinesPerItem)
        {
            int line = s + 1;
            if (string.IsNullOrWhiteSpace(lines[s])) throw new DataException($"{path}:{line}: field 'ctx': empty context");
            string label = lines[s + 1].Trim();
            if (!int.TryParse(label, NumberStyles.None, CultureInfo.InvariantCulture, out int gold) || gold > 3)
                throw new DataException($"{path}:{line + 1}: field 'label': expected 0, 1, 2 or 3, got '{lines[s + 1]}'");
            var endings = new string[4];
            for (int j = 0; j < 4; j++)
            {
                if (string.IsNullOrWhiteSpace(lines[s + 2 + j])) throw new DataException($"{path}:{line + 2 + j}: field 'endings[{j}]': empty ending");
                endings[j] = Preprocess(lines[s + 2 + j]);
            }
            items.Add(new EvalItem($"hellaswag-{s / LinesPerItem}", [Preprocess(lines[s])], endings, gold, $"{path}:{line}"));
        }
        return items;
    }

    /// <summary>The harness' <c>preprocess</c> (WikiHow bracket artefacts).</summary>
    public static string Preprocess(string text)
    {
        text = text.Trim().Replace(" [title]", ". ");
        text = Brackets().Replace(text, "");
        return text.Replace("  ", " ");
    }

    [GeneratedRegex(@"\[.*?\]")]
    private static partial Regex Brackets();
}
