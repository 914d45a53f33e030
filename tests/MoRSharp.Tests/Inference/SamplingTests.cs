using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Inference;

public class SamplingTests
{
    private static Tensor Logits(params float[] v) => torch.tensor(v);

    [Fact]
    public void Greedy_top_k_1_and_tiny_top_p_pick_the_argmax()
    {
        using var logits = Logits(0.1f, 2.0f, 1.9f, -1f);
        using var greedy = new Sampler(SamplingOptions.Greedy);
        using var topK = new Sampler(new SamplingOptions { TopK = 1, Seed = 1 });
        using var topP = new Sampler(new SamplingOptions { TopP = 0.01, Seed = 2 });
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal(1, greedy.Next(logits, []));
            Assert.Equal(1, topK.Next(logits, []));
            Assert.Equal(1, topP.Next(logits, []));
        }
    }

    [Fact]
    public void Top_k_2_only_ever_picks_the_two_best_and_both_appear()
    {
        using var logits = Logits(0.5f, 1.0f, 1.0f, 0.9f);
        using var s = new Sampler(new SamplingOptions { TopK = 2, Seed = 3 });
        var seen = Enumerable.Range(0, 200).Select(_ => s.Next(logits, [])).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 2 }, seen);
    }

    [Fact]
    public void Top_p_keeps_the_token_that_crosses_p()
    {
        // probabilities ≈ 0.5, 0.3, 0.2: p = 0.6 keeps {0, 1}
        using var logits = torch.tensor(new[] { 0.5f, 0.3f, 0.2f }).log();
        using var s = new Sampler(new SamplingOptions { TopP = 0.6, Seed = 4 });
        var seen = Enumerable.Range(0, 300).Select(_ => s.Next(logits, [])).ToHashSet();
        Assert.Equal(new HashSet<int> { 0, 1 }, seen);
    }

    [Fact]
    public void Same_seed_same_tokens_and_other_seed_differs()
    {
        using var logits = torch.zeros(50);
        int[] Draw(long seed)
        {
            using var s = new Sampler(new SamplingOptions { Seed = seed });
            return Enumerable.Range(0, 30).Select(_ => s.Next(logits, [])).ToArray();
        }
        Assert.Equal(Draw(7), Draw(7));
        Assert.NotEqual(Draw(7), Draw(8));
    }

    [Fact]
    public void Repetition_penalty_moves_greedy_off_a_seen_token()
    {
        using var logits = Logits(1.0f, 1.2f, -0.5f);
        using var plain = new Sampler(SamplingOptions.Greedy);
        using var penal = new Sampler(SamplingOptions.Greedy with { RepetitionPenalty = 1.5 });
        Assert.Equal(1, plain.Next(logits, [1]));
        Assert.Equal(0, penal.Next(logits, [1]));           // 1.2 / 1.5 = 0.8 < 1.0
        using var negative = Logits(-1.0f, -0.9f);
        Assert.Equal(0, penal.Next(negative, [1]));         // −0.9 · 1.5 = −1.35 < −1.0
    }

    [Theory]
    [InlineData(-0.1, 0, 1.0, 1.0, "temperature")]
    [InlineData(double.NaN, 0, 1.0, 1.0, "temperature")]
    [InlineData(1.0, -1, 1.0, 1.0, "top_k")]
    [InlineData(1.0, 0, 0.0, 1.0, "top_p")]
    [InlineData(1.0, 0, 1.0, 0.0, "repetition_penalty")]
    public void Invalid_values_name_the_field(double t, int k, double p, double rep, string field)
    {
        var e = Assert.Throws<ArgumentException>(() => new SamplingOptions { Temperature = t, TopK = k, TopP = p, RepetitionPenalty = rep }.Validate());
        Assert.StartsWith(field, e.Message);
    }

    [Fact]
    public void Streamer_stops_before_a_stop_string_split_over_tokens_and_holds_back_partial_matches()
    {
        var tok = TokenizerFactory.Bytes();
        var s = new TextStreamer(tok, ["END"]);
        var pieces = "abcENDxyz".Select(c => s.Push(c)).ToList();
        Assert.Equal("abc", string.Concat(pieces));
        Assert.True(s.Stopped);
        Assert.Equal("", pieces[3]);   // "E" could start "END": held back
        var t = new TextStreamer(tok, ["END"]);
        var text = string.Concat("abEx".Select(c => t.Push(c))) + t.Flush();
        Assert.Equal("abEx", text);    // the held-back "E" comes out once it cannot be a stop string
    }

    [Fact]
    public void Streamer_emits_multibyte_characters_whole()
    {
        var tok = TokenizerFactory.Bytes();
        var s = new TextStreamer(tok, null);
        var bytes = System.Text.Encoding.UTF8.GetBytes("é€");
        var pieces = bytes.Select(b => s.Push(b)).ToList();
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal("é€", string.Concat(pieces) + s.Flush());
    }
}
