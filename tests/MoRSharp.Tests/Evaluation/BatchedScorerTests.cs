using MoRSharp.Config;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Evaluation;
using MoRSharp.Evaluation.Tasks;
using MoRSharp.Model;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Evaluation;

public class BatchedScorerTests
{
    /// <summary>Seeded groups of 1–4 requests with contexts of 1–40 tokens and continuations of 1–9.</summary>
    private static List<RequestGroup> RandomGroups(int count, int vocab, int seed, int maxContext = 40)
    {
        var rng = new Random(seed);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
        var groups = new List<RequestGroup>();
        for (int g = 0; g < count; g++)
        {
            var ctx = Tokens(rng.Next(1, maxContext + 1));
            groups.Add(new RequestGroup(Enumerable.Range(0, rng.Next(1, 5)).Select(_ => new ContinuationRequest(ctx, Tokens(rng.Next(1, 10)))).ToList()));
        }
        return groups;
    }

    private static double MaxDiff(IReadOnlyList<ContinuationScore[]> a, IReadOnlyList<ContinuationScore[]> b)
    {
        double diff = 0;
        for (int g = 0; g < a.Count; g++)
            for (int i = 0; i < a[g].Length; i++)
            {
                diff = Math.Max(diff, Math.Abs(a[g][i].LogProb - b[g][i].LogProb));
                for (int k = 0; k < a[g][i].TokenLogProbs.Length; k++)
                    diff = Math.Max(diff, Math.Abs(a[g][i].TokenLogProbs[k] - b[g][i].TokenLogProbs[k]));
            }
        return diff;
    }

    [Theory]
    [InlineData("none", "recursion_wise")]
    [InlineData("expert", "recursion_wise")]
    [InlineData("expert", "shared")]
    [InlineData("token", "recursion_wise")]
    public void Shared_context_run_once_gives_the_same_scores(string routing, string kv)
    {
        var config = TestConfigs.Tiny(routing);
        config.MoR!.KvCache = kv;
        using var model = new MoRForCausalLM(config, seed: 53);
        var groups = RandomGroups(10, config.VocabSize, 54);
        // WinoGrande-like: different contexts with a common prefix, one continuation
        var rng = new Random(55);
        int[] T(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var prefix = T(12);
        var cont = T(5);
        groups.Add(new RequestGroup([new ContinuationRequest([.. prefix, .. T(3)], cont), new ContinuationRequest([.. prefix, .. T(6)], cont)]));
        // too long for the model's 64 positions: left truncation, handled by the fallback
        groups.Add(new RequestGroup([new ContinuationRequest(T(70), T(3)), new ContinuationRequest(T(70), T(2))]));
        var batched = new BatchedScorer(model, batchSize: 4).Score(groups);
        var shared = new SharedContextScorer(model).Score(groups);
        double d = MaxDiff(batched, shared);
        Assert.True(d < 1e-4, $"shared-context scores differ from full rows by {d}");
        for (int g = 0; g < groups.Count; g++)
            Assert.Equal(batched[g].Select(x => x.IsGreedy), shared[g].Select(x => x.IsGreedy));
        Assert.Equal(12, groups[^2].SharedContextLength);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("expert")]
    [InlineData("token")]
    public void Batched_scores_equal_unbatched_scores(string routing)
    {
        var config = TestConfigs.Tiny(routing);
        using var model = new MoRForCausalLM(config, seed: 51);
        var groups = RandomGroups(12, config.VocabSize, 52);
        var one = new BatchedScorer(model, batchSize: 1).Score(groups);
        var five = new BatchedScorer(model, batchSize: 5).Score(groups);
        var all = new BatchedScorer(model, batchSize: 64).Score(groups);
        double d5 = MaxDiff(one, five), dAll = MaxDiff(one, all);
        Assert.True(d5 < 1e-4 && dAll < 1e-4, $"batch 5 differs by {d5}, one batch by {dAll}");
        for (int g = 0; g < groups.Count; g++)
            Assert.Equal(one[g].Select(s => s.IsGreedy), all[g].Select(s => s.IsGreedy));
        // the scores are real: log-probabilities, and not all equal
        Assert.All(one.SelectMany(s => s), s => Assert.True(s.LogProb < 0 && s.TokenLogProbs.Length > 0));
        Assert.True(one.SelectMany(s => s).Select(s => s.LogProb).Distinct().Count() > 10);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Scores_are_the_log_softmax_of_the_models_own_logits(bool tied)
    {
        var config = TestConfigs.Tiny("expert");
        config.TieWordEmbeddings = tied;
        using var model = new MoRForCausalLM(config, seed: 53);
        model.eval();
        int[] ctx = [5, 17, 3, 88, 42, 9, 1], cont = [60, 7, 33];
        var score = new BatchedScorer(model).Score([new RequestGroup([new ContinuationRequest(ctx, cont)])])[0][0];

        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(ctx.Concat(cont).Select(i => (long)i).ToArray()).unsqueeze(0);           // [1, 10]
        var logp = nn.functional.log_softmax(model.Forward(ids, RoutingMode.Causal).Logits[0], -1); // [10, V]
        for (int k = 0; k < cont.Length; k++)
        {
            float expected = logp[ctx.Length - 1 + k, cont[k]].item<float>();
            Assert.Equal(expected, score.TokenLogProbs[k], 1e-4);
        }
        Assert.Equal(score.TokenLogProbs.Sum(x => (double)x), score.LogProb, 1e-9);
        bool greedy = Enumerable.Range(0, cont.Length).All(k => logp[ctx.Length - 1 + k].argmax().item<long>() == cont[k]);
        Assert.Equal(greedy, score.IsGreedy);
    }

    [Fact]
    public void Long_requests_are_truncated_from_the_left()
    {
        var config = TestConfigs.Tiny("expert", context: 64);
        using var model = new MoRForCausalLM(config, seed: 54);
        var rng = new Random(55);
        var ctx = Enumerable.Range(0, 30).Select(_ => rng.Next(config.VocabSize)).ToArray();
        int[] cont = [4, 8, 15, 16];
        // max length 16: the row is the last 17 tokens (13 of context + 4 of continuation) without the last one
        var truncated = new BatchedScorer(model, maxLength: 16).Score([new RequestGroup([new ContinuationRequest(ctx, cont)])])[0][0];
        var manual = new BatchedScorer(model).Score([new RequestGroup([new ContinuationRequest(ctx[^13..], cont)])])[0][0];
        var full = new BatchedScorer(model).Score([new RequestGroup([new ContinuationRequest(ctx, cont)])])[0][0];
        Assert.Equal(manual.LogProb, truncated.LogProb, 1e-4);
        Assert.NotEqual(full.LogProb, truncated.LogProb, 3);     // the dropped context mattered
        Assert.Throws<ArgumentException>(() => new BatchedScorer(model).Score([new RequestGroup([new ContinuationRequest(ctx, [])])]));
    }

    [Fact]
    public void A_continuation_longer_than_the_context_is_scored_in_windows_from_its_end()
    {
        var config = TestConfigs.Tiny("expert", context: 64);
        using var model = new MoRForCausalLM(config, seed: 59);
        var rng = new Random(60);
        int[] T(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var ctx = T(5);
        var cont = T(10);
        var scorer = new BatchedScorer(model, batchSize: 2, maxLength: 4);
        var whole = scorer.Score([new RequestGroup([new ContinuationRequest(ctx, cont)])])[0][0];
        Assert.Equal(10, whole.TokenLogProbs.Length);
        // pieces of at most 4 tokens cut from the end — [6, 10), [2, 6), [0, 2) — each with the 4 tokens before it as context
        var all = ctx.Concat(cont).ToArray();
        var pieces = new[] { (0, 2), (2, 6), (6, 10) }.Select(p =>
            scorer.Score([new RequestGroup([new ContinuationRequest(all[..(5 + p.Item1)], cont[p.Item1..p.Item2])])])[0][0]);
        var expected = pieces.SelectMany(p => p.TokenLogProbs).ToArray();
        for (int k = 0; k < 10; k++) Assert.Equal(expected[k], whole.TokenLogProbs[k], 1e-4);
        Assert.Equal(expected.Sum(x => (double)x), whole.LogProb, 1e-3);
    }

    [Fact]
    public void Causal_scores_of_an_expert_choice_model_ignore_text_appended_after_the_scored_span()
    {
        var config = TestConfigs.Tiny("expert");
        using var model = new MoRForCausalLM(config, seed: 56);
        var rng = new Random(57);
        int[] T(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var ctx = T(20);
        var cont = T(6);
        var extra = T(25);
        var groups = new List<RequestGroup> { new([new(ctx, cont), new(ctx, cont.Concat(extra).ToArray())]) };

        double Gap(RoutingMode mode)
        {
            var s = new BatchedScorer(model, batchSize: 1, mode: mode).Score(groups)[0];
            return Enumerable.Range(0, cont.Length).Max(k => Math.Abs(s[0].TokenLogProbs[k] - s[1].TokenLogProbs[k]));
        }

        double causal = Gap(RoutingMode.Causal);
        Assert.True(causal < 1e-5, $"appending text changed the causal scores of the span by {causal}");
        // The check has teeth: training-style top-k routing picks tokens by comparing the whole row, so the same append leaks back.
        double topK = Gap(RoutingMode.TopK);
        Assert.True(topK > 1e-3, $"top-k routing was expected to leak the appended text (gap {topK})");
    }

    /// <summary>
    /// A model with known outputs: every layer's output projection is zero (attention and MLP add nothing), every embedding
    /// row is the all-ones vector and lm_head row v is l_v/d·1, so at every position logits = l (up to RMSNorm's ε): a unigram
    /// model whose log-probabilities are log_softmax(l). Over bytes: p(' ') = 0.2, p('a') = 0.3, p('b') = 0.25, the rest share 0.25.
    /// </summary>
    private static (MoRForCausalLM Model, double[] LogP) UnigramByteModel()
    {
        var config = TestConfigs.Vanilla(2);
        config.VocabSize = 257;
        config.TieWordEmbeddings = false;
        var model = new MoRForCausalLM(config, seed: 58);
        var p = Enumerable.Repeat(0.25 / 254, 257).ToArray();
        p[' '] = 0.2; p['a'] = 0.3; p['b'] = 0.25;
        var logp = p.Select(x => Math.Log(x)).ToArray();
        int d = config.HiddenSize;
        using var _ = no_grad();
        foreach (var (name, param) in model.named_parameters())
        {
            if (name.EndsWith("o_proj.weight") || name.EndsWith("down_proj.weight")) param.zero_();
            else if (name == "model.embed_tokens.weight") param.fill_(1.0);
            else if (name == "lm_head.weight") param.copy_(tensor(logp.Select(x => (float)(x / d)).ToArray()).unsqueeze(1).expand(257, d));
        }
        return (model, logp);
    }

    [Fact]
    public void A_model_with_known_outputs_gives_the_expected_scores_and_choices()
    {
        var (model, logp) = UnigramByteModel();
        using var _ = model;
        var tokenizer = TokenizerFactory.Bytes();
        var evaluator = new TaskEvaluator(tokenizer, new BatchedScorer(model, batchSize: 3));
        var task = new EvalTask
        {
            Name = "unigram", Kind = TaskKind.MultipleChoice, EvalFile = "-", EvalSplit = "hand-built", Shots = ShotSource.None,
            Reader = _ => throw new InvalidOperationException(),
        };
        // Item 0: " b" (log .2 + log .25 = −3.00) beats " aa" (log .2 + 2 log .3 = −4.02) by sum, but per byte −4.02/2 = −2.01
        // beats −3.00/1: acc picks "b", acc_norm picks "aa" (gold). Item 1: "ab" vs "zz" — both metrics pick "ab" (gold).
        var items = new[]
        {
            new EvalItem("0", ["Q:"], ["aa", "b"], 0, "hand:1"),
            new EvalItem("1", ["Q:"], ["zz", "ab"], 1, "hand:2"),
        };
        var prepared = evaluator.Prepare(task, items, null, new TaskRunOptions());
        var scores = new BatchedScorer(model, batchSize: 3).Score(prepared.Groups);
        double Expected(string continuation) => continuation.Sum(ch => logp[ch]);
        Assert.Equal(Expected(" aa"), scores[0][0].LogProb, 1e-4);
        Assert.Equal(Expected(" b"), scores[0][1].LogProb, 1e-4);
        Assert.Equal(Expected(" zz"), scores[1][0].LogProb, 1e-4);
        Assert.Equal(Expected(" ab"), scores[1][1].LogProb, 1e-4);
        Assert.True(scores[0][1].IsGreedy == false && scores[0][0].IsGreedy == false);   // ' ' is not the argmax ('a' is)

        var result = TaskEvaluator.Aggregate(prepared, scores, 1);
        Assert.Equal(new[] { 1, 1 }, result.Predictions);
        Assert.Equal(0.5, result.Acc, 9);
        Assert.Equal(1.0, result.AccNorm!.Value, 9);
        Assert.Equal(0.5, result.Chance!.Value, 9);

        // LAMBADA-style greedy check: after any context the argmax byte is 'a', so " a" is not greedy (' ' is not the argmax) but "aa" is.
        var greedy = new BatchedScorer(model).Score([new RequestGroup([new([1, 2], [' ', 'a']), new([1, 2], ['a', 'a'])])])[0];
        Assert.False(greedy[0].IsGreedy);
        Assert.True(greedy[1].IsGreedy);
    }
}
