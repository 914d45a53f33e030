using MoRSharp.Data.Tokenizers;
using MoRSharp.Evaluation;
using MoRSharp.Evaluation.Tasks;

namespace MoRSharp.Tests.Evaluation;

/// <summary>A scorer with scripted answers, behind the same interface as the model: the metric logic alone.</summary>
public sealed class FakeScorer(Func<string, string, (double LogProb, bool Greedy)> answer) : IContinuationScorer
{
    private static readonly ITokenizer Bytes = TokenizerFactory.Bytes();
    public List<(string Context, string Continuation)> Seen { get; } = [];
    public int MaxLength => 1 << 20;

    public IReadOnlyList<ContinuationScore[]> Score(IReadOnlyList<RequestGroup> groups, IProgress<long>? progress = null) =>
        groups.Select(g => g.Requests.Select(r =>
        {
            string ctx = Bytes.Decode(r.Context), cont = Bytes.Decode(r.Continuation);
            Seen.Add((ctx, cont));
            var (lp, greedy) = answer(ctx, cont);
            return new ContinuationScore(lp, greedy, [(float)lp]);
        }).ToArray()).ToList();
}

public class TaskEvaluatorTests
{
    private static readonly ITokenizer Bytes = TokenizerFactory.Bytes();

    private static EvalTask Task(TaskKind kind = TaskKind.MultipleChoice, ShotSource shots = ShotSource.None, bool accNorm = true, string delimiter = " ") => new()
    {
        Name = "test", Kind = kind, EvalFile = "test.jsonl", EvalSplit = "test", Shots = shots, ShotSplit = shots == ShotSource.None ? null : "train",
        ReportsAccNorm = accNorm, TargetDelimiter = delimiter, Reader = _ => throw new InvalidOperationException("not read from disk"),
    };

    private static TaskResult Run(EvalTask task, IReadOnlyList<EvalItem> items, FakeScorer scorer, TaskRunOptions? options = null, IReadOnlyList<EvalItem>? pool = null)
    {
        var evaluator = new TaskEvaluator(Bytes, scorer);
        return evaluator.Score(evaluator.Prepare(task, items, pool, options ?? new TaskRunOptions()));
    }

    [Fact]
    public void Acc_and_acc_norm_differ_where_choice_lengths_differ()
    {
        // Scripted log-likelihoods by continuation. The long right answer loses on the sum and wins per byte.
        var ll = new Dictionary<string, double> { [" a long answer"] = -14, [" no"] = -6, [" yes"] = -9, [" maybe so"] = -10 };
        var scorer = new FakeScorer((_, cont) => (ll[cont], false));
        var items = new[]
        {
            new EvalItem("0", ["Q1"], ["a long answer", "no"], 0, "t:1"),     // sum: no (−6) ; per byte: −14/13 > −6/2  → acc 0, acc_norm 1
            new EvalItem("1", ["Q2"], ["yes", "maybe so"], 0, "t:2"),        // sum: yes (−9); per byte: −9/3 = −3 < −10/8  → acc 1, acc_norm 0
        };
        var r = Run(Task(), items, scorer);
        Assert.Equal(0.5, r.Acc, 9);
        Assert.Equal(0.5, r.AccNorm!.Value, 9);
        Assert.Equal(new[] { 1, 0 }, r.Predictions);
        // item by item: the first item is right only by acc_norm, the second only by acc
        Assert.Equal(0.0, Run(Task(), items[..1], scorer).Acc, 9);
        Assert.Equal(1.0, Run(Task(), items[..1], scorer).AccNorm!.Value, 9);
        Assert.Equal(1.0, Run(Task(), items[1..], scorer).Acc, 9);
        Assert.Equal(0.0, Run(Task(), items[1..], scorer).AccNorm!.Value, 9);
    }

    [Fact]
    public void Acc_norm_divides_by_utf8_bytes_not_characters()
    {
        // "é" is 1 character but 2 bytes: per byte −3/2 = −1.5 beats "ab"'s −3.2/2 = −1.6 (per character it would lose: −3 < −1.6).
        var scorer = new FakeScorer((_, cont) => (cont == " é" ? -3.0 : -3.2, false));
        var r = Run(Task(), [new EvalItem("0", ["Q"], ["ab", "é"], 1, "t:1")], scorer);
        Assert.Equal(1.0, r.AccNorm!.Value, 9);
    }

    [Fact]
    public void Standard_error_is_the_harness_mean_stderr_and_ties_go_to_the_first_choice()
    {
        // 10 items, gold alternating 0/1; the scorer scores both choices equally, so the prediction is always choice 0 (numpy argmax).
        var items = Enumerable.Range(0, 10).Select(i => new EvalItem($"{i}", ["Q"], ["x", "y"], i < 3 ? 0 : 1, $"t:{i + 1}")).ToArray();
        var r = Run(Task(), items, new FakeScorer((_, _) => (-1.0, false)));
        Assert.Equal(0.3, r.Acc, 9);
        Assert.Equal(Math.Sqrt(0.3 * 0.7 / 9), r.AccStderr, 12);
        Assert.Equal(r.AccStderr, r.AccNormStderr!.Value, 12);
        Assert.All(r.Predictions, p => Assert.Equal(0, p));
        Assert.Equal(0.5, r.Chance!.Value, 9);
        Assert.True(double.IsNaN(TaskEvaluator.Stderr(1.0, 1)));
    }

    [Fact]
    public void Last_word_task_reports_greedy_accuracy_and_perplexity()
    {
        var items = new[]
        {
            new EvalItem("0", ["he opened the"], [" door"], 0, "l:1"),
            new EvalItem("1", ["she said"], [" goodbye"], 0, "l:2"),
        };
        var scorer = new FakeScorer((_, cont) => cont == " door" ? (-1.0, true) : (-3.0, false));
        var r = Run(Task(TaskKind.LastWord, accNorm: false, delimiter: ""), items, scorer);
        Assert.Equal(0.5, r.Acc, 9);
        Assert.Equal(Math.Exp(2.0), r.Perplexity!.Value, 9);
        Assert.Null(r.AccNorm);
        Assert.Null(r.Chance);
        Assert.Equal([("he opened the", " door"), ("she said", " goodbye")], scorer.Seen);
    }

    [Fact]
    public void WinoGrande_partial_scoring_scores_the_text_after_the_blank_given_each_option()
    {
        var (contexts, continuation) = WinoGrandeReader.Split("The trophy doesn't fit into the brown suitcase because _ is too large.", "the trophy", "the suitcase");
        Assert.Equal(["The trophy doesn't fit into the brown suitcase because the trophy", "The trophy doesn't fit into the brown suitcase because the suitcase"], contexts);
        Assert.Equal("is too large.", continuation);

        var item = new EvalItem("w", contexts, [continuation], 0, "w:1");
        Assert.Equal(2, item.NumChoices);
        var scorer = new FakeScorer((ctx, _) => (ctx.EndsWith("trophy") ? -2.0 : -5.0, false));
        var task = TaskRegistry.Get("winogrande");
        var r = Run(task, [item], scorer);
        Assert.Equal(
        [
            ("The trophy doesn't fit into the brown suitcase because the trophy", " is too large."),
            ("The trophy doesn't fit into the brown suitcase because the suitcase", " is too large."),
        ], scorer.Seen);
        Assert.Equal(1.0, r.Acc, 9);
        Assert.Null(r.AccNorm);                                   // the harness reports acc only
        // as a few-shot example it renders with its gold option filled in
        Assert.Equal("The trophy doesn't fit into the brown suitcase because the trophy is too large.", FewShot.Render(item, " "));
    }

    [Fact]
    public void Pairs_are_encoded_as_the_harness_does()
    {
        var evaluator = new TaskEvaluator(Bytes, new FakeScorer((_, _) => (0, false)));
        // trailing spaces of the context move to the continuation
        var r = evaluator.EncodePair("Answer: ", "yes");
        Assert.Equal("Answer:", Bytes.Decode(r.Context));
        Assert.Equal(" yes", Bytes.Decode(r.Continuation));
        // an empty context is EOS
        r = evaluator.EncodePair("", " word");
        Assert.Equal([Bytes.EosId!.Value], r.Context);
        Assert.Equal(" word", Bytes.Decode(r.Continuation));
        // with BPE, the continuation's tokens are those of the whole text after the context's tokens
        var gpt2 = new TaskEvaluator(TokenizerFactory.Gpt2(), new FakeScorer((_, _) => (0, false)));
        r = gpt2.EncodePair("The capital of France is", " Paris");
        Assert.Equal(TokenizerFactory.Gpt2().Encode("The capital of France is"), r.Context);
        Assert.Equal(" Paris", TokenizerFactory.Gpt2().Decode(r.Continuation));
    }

    [Fact]
    public void Few_shot_prompts_are_seeded_per_item_and_never_show_the_item_itself()
    {
        var pool = Enumerable.Range(0, 6).Select(i => new EvalItem($"{i}", [$"q{i}"], [$"a{i}", "zzz"], 0, $"p:{i + 1}")).ToArray();
        var scorer = new FakeScorer((_, _) => (-1, false));
        var task = Task(shots: ShotSource.SameSplit);
        Run(task, pool, scorer, new TaskRunOptions { Shots = 2, Seed = 7 }, pool);
        var contexts = scorer.Seen.Where((_, i) => i % 2 == 0).Select(s => s.Context).ToList();     // one per item
        for (int i = 0; i < pool.Length; i++)
        {
            var parts = contexts[i].Split("\n\n");
            Assert.Equal(3, parts.Length);                                    // 2 examples, then the item's own context
            Assert.Equal($"q{i}", parts[2]);
            Assert.All(parts[..2], p => Assert.Matches(@"^q(\d) a\1$", p));   // gold context + " " + gold continuation
            Assert.DoesNotContain($"q{i} a{i}", parts[..2]);                  // never the item itself
            Assert.NotEqual(parts[0], parts[1]);
        }
        // same seed → same prompts; --limit keeps the prompts of the items it keeps; another seed → other examples
        var again = new FakeScorer((_, _) => (-1, false));
        Run(task, pool, again, new TaskRunOptions { Shots = 2, Seed = 7, Limit = 3 }, pool);
        Assert.Equal(scorer.Seen.Take(6), again.Seen);
        var other = new FakeScorer((_, _) => (-1, false));
        Run(task, pool, other, new TaskRunOptions { Shots = 2, Seed = 8 }, pool);
        Assert.NotEqual(scorer.Seen, other.Seen);
    }

    [Fact]
    public void Shots_are_refused_where_the_data_has_no_split_to_draw_them_from()
    {
        var scorer = new FakeScorer((_, _) => (-1, false));
        var items = new[] { new EvalItem("0", ["q"], ["a", "b"], 0, "t:1") };
        var e = Assert.Throws<ArgumentException>(() => Run(TaskRegistry.Get("hellaswag"), items, scorer, new TaskRunOptions { Shots = 1 }));
        Assert.Contains("0-shot", e.Message);
        Assert.Throws<ArgumentException>(() => FewShot.Check(TaskRegistry.Get("piqa"), 5));
        Assert.Throws<ArgumentException>(() => FewShot.Check(TaskRegistry.Get("lambada"), 1));
        FewShot.Check(TaskRegistry.Get("arc_easy"), 25);
        FewShot.Check(TaskRegistry.Get("winogrande"), 5);
        // a pool too small for K distinct examples other than the item
        Assert.Throws<ArgumentException>(() => FewShot.Sample(3, 3, 1, "t", 0, sameSplit: true));
        Assert.Throws<ArgumentException>(() => TaskRegistry.Get("hellaswagg"));
        Assert.Equal("lambada", TaskRegistry.Get("lambada_openai").Name);
    }
}
