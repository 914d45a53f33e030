using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;
using MoRSharp.Routing;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Inference;

public class TextGeneratorTests
{
    [Fact]
    public async Task Greedy_generation_equals_argmax_of_full_forwards_with_their_depths()
    {
        using var model = BatchingEngineTests.Build("expert", "middle_cycle", "recursion_wise", 51);
        var tok = TokenizerFactory.Bytes();
        using var gen = new TextGenerator(model, tok);
        var prompt = tok.Encode("abc");
        var (_, tokens, finish) = await gen.CompleteAsync(prompt, new GenerationOptions { MaxTokens = 8, Sampling = SamplingOptions.Greedy, StopTokenIds = [] });
        Assert.Equal(FinishReason.Length, finish);
        Assert.Equal(8, tokens.Count);
        // Reference: re-run the whole sequence each step (no cache).
        var ids = prompt.Select(i => (long)i).ToList();
        using var _ = no_grad();
        for (int n = 0; n < 8; n++)
        {
            using var scope = NewDisposeScope();
            var o = model.Forward(torch.tensor(ids.ToArray()).unsqueeze(0), RoutingMode.Causal);
            long next = o.Logits[0, -1].argmax().item<long>();
            Assert.Equal(next, tokens[n].Id);
            Assert.Equal(o.Routing.Depth![0, -1].item<long>(), tokens[n].Depth);
            ids.Add(next);
        }
    }

    [Fact]
    public async Task Stop_token_and_stop_string_end_generation()
    {
        using var model = BatchingEngineTests.Build("none", "none", "recursion_wise", 52);
        var tok = TokenizerFactory.Bytes();
        using var gen = new TextGenerator(model, tok);
        var greedy = new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.Greedy, StopTokenIds = [] };
        var (text, tokens, _) = await gen.CompleteAsync(tok.Encode("q"), greedy);
        // stop at the id of the third token: two tokens come out
        var (_, stopped, finish) = await gen.CompleteAsync(tok.Encode("q"), greedy with { StopTokenIds = [tokens[2].Id] });
        int firstAt = tokens.FindIndex(t => t.Id == tokens[2].Id);
        Assert.Equal(FinishReason.Stop, finish);
        Assert.Equal(firstAt, stopped.Count);
        // a stop string taken from the middle of the greedy text cuts it there
        string stop = text.Substring(4, 2);
        var (cut, _, f2) = await gen.CompleteAsync(tok.Encode("q"), greedy with { StopStrings = [stop] });
        Assert.Equal(FinishReason.Stop, f2);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], cut);
    }

    [Fact]
    public async Task Cancellation_stops_the_stream()
    {
        using var model = BatchingEngineTests.Build("none", "none", "recursion_wise", 53);
        using var gen = new TextGenerator(model, TokenizerFactory.Bytes());
        using var cts = new CancellationTokenSource();
        int n = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var t in gen.GenerateAsync([65], new GenerationOptions { MaxTokens = 50, StopTokenIds = [] }, cts.Token))
                if (++n == 3) cts.Cancel();
        });
        Assert.Equal(3, n);
    }
}

public class ChatSessionTests
{
    [Fact]
    public async Task A_session_reuses_the_cached_prefix_and_generates_the_same_tokens()
    {
        using var model = BatchingEngineTests.Build("token", "middle_cycle", "recursion_wise", 54);
        var tok = TokenizerFactory.Bytes();
        using var gen = new TextGenerator(model, tok);
        var greedy = new GenerationOptions { MaxTokens = 5, Sampling = SamplingOptions.Greedy, StopTokenIds = [] };
        using var session = gen.CreateSession();
        var first = tok.Encode("User: hi\nAssistant:");
        var (_, reply, _) = await gen.CompleteAsync(first, greedy, session);
        Assert.Equal(0, session.ReusedTokens);
        // the next turn extends what was cached (prompt + all but the last generated token)
        var second = first.Concat(reply.Select(t => t.Id)).Concat(tok.Encode("\nUser: more\nAssistant:")).ToArray();
        var (_, withSession, _) = await gen.CompleteAsync(second, greedy, session);
        Assert.Equal(first.Length + reply.Count - 1, session.ReusedTokens);
        var (_, fresh, _) = await gen.CompleteAsync(second, greedy);
        Assert.Equal(fresh.Select(t => (t.Id, t.Depth)), withSession.Select(t => (t.Id, t.Depth)));
        // a prompt that does not extend the cache starts over
        await gen.CompleteAsync(tok.Encode("something else"), greedy, session);
        Assert.Equal(0, session.ReusedTokens);
    }
}
