using MoRSharp.Data;

namespace MoRSharp.Evaluation.Tasks;

/// <summary>
/// LAMBADA, OpenAI variant: JSONL rows <c>{text}</c>. As lm-evaluation-harness (<c>lambada_openai</c>): the text is split on
/// single spaces; the context is every word but the last, the continuation is <c>" " + last word</c>, with no further
/// delimiter. Scored by greedy match of the whole last word (accuracy) and by the perplexity exp(−mean log p(last word)).
/// </summary>
public static class LambadaReader
{
    public static IReadOnlyList<EvalItem> Read(string path)
    {
        var items = new List<EvalItem>();
        foreach (var (line, row) in TaskFile.Jsonl(path))
        {
            string text = TaskFile.String(row, "text", path, line);
            int space = text.LastIndexOf(' ');
            if (space < 0) throw new DataException($"{path}:{line}: field 'text': no space, so there is no last word to predict");
            if (space == text.Length - 1) throw new DataException($"{path}:{line}: field 'text': ends with a space (the last word is empty)");
            items.Add(new EvalItem($"lambada-{items.Count}", [text[..space]], [text[space..]], 0, $"{path}:{line}"));
        }
        return items;
    }
}
