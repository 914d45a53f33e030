using Microsoft.Extensions.AI;
using MoRSharp.Chat;
using MoRSharp.Data.Tokenizers;
using MoRSharp.Inference;

namespace MoRSharp.Tests.Server;

/// <summary><see cref="MoRChatClient"/> over a scripted service (what it sends and how it reports) and over the real generator.</summary>
[Collection(nameof(ServerCollection))]
public class MoRChatClientTests(TinyModelFixture tiny)
{
    [Fact]
    public async Task Chat_options_map_to_generation_options()
    {
        var service = new FakeService();
        var client = new MoRChatClient(service);
        var options = new ChatOptions
        {
            Temperature = 0.5f, TopP = 0.875f, TopK = 5, MaxOutputTokens = 7, StopSequences = ["x"], Seed = 42,
            AdditionalProperties = new() { ["repetition_penalty"] = 1.25 },
        };
        await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], options);
        var g = Assert.Single(service.Calls).options;
        Assert.Equal(7, g.MaxTokens);
        Assert.Equal(new SamplingOptions { Temperature = 0.5, TopP = 0.875, TopK = 5, Seed = 42, RepetitionPenalty = 1.25 }, g.Sampling);
        Assert.Equal(["x", .. PlainChatFormatter.Instance.StopStrings], g.StopStrings);
    }

    [Fact]
    public async Task Without_options_it_samples_at_temperature_one_up_to_the_context()
    {
        var service = new FakeService { ContextLength = 50 };
        await new MoRChatClient(service).GetResponseAsync([new ChatMessage(ChatRole.User, "hi")]);
        var (prompt, g) = Assert.Single(service.Calls);
        Assert.Equal(new SamplingOptions(), g.Sampling);
        Assert.Equal(50 - prompt.Length, g.MaxTokens);
    }

    [Fact]
    public async Task Messages_are_rendered_with_the_template_and_BOS_is_prepended_when_the_tokenizer_has_one()
    {
        var service = new FakeService { Tokenizer = new BosBytes(), ContextLength = 128 };
        var client = new MoRChatClient(service);
        await client.GetResponseAsync([new ChatMessage(ChatRole.System, "be brief"), new ChatMessage(ChatRole.User, "hi")],
            new ChatOptions { Instructions = "say yes" });
        var prompt = Assert.Single(service.Calls).prompt;
        Assert.Equal(256, prompt[0]);
        Assert.Equal("<|system|>\nsay yes\n<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n", TokenizerFactory.Bytes().Decode(prompt.AsSpan(1)));
    }

    [Theory]
    [InlineData(FinishReason.Stop, "stop")]
    [InlineData(FinishReason.Length, "length")]
    public async Task Response_has_text_usage_finish_reason_and_depths(FinishReason finish, string expected)
    {
        var service = new FakeService { Pieces = ["ab", "", "c"], Finish = finish };
        var r = await new MoRChatClient(service, options: new MoRChatClientOptions { ModelId = "m" })
            .GetResponseAsync([new ChatMessage(ChatRole.User, "hi")]);
        int promptTokens = Assert.Single(service.Calls).prompt.Length;
        Assert.Equal("abc", r.Text);
        Assert.Equal(ChatRole.Assistant, r.Messages.Single().Role);
        Assert.Equal(expected, r.FinishReason?.Value);
        Assert.Equal(promptTokens, r.Usage?.InputTokenCount);
        Assert.Equal(3, r.Usage?.OutputTokenCount);
        Assert.Equal(promptTokens + 3, r.Usage?.TotalTokenCount);
        Assert.Equal("m", r.ModelId);
        Assert.Equal([1, 1, 1], (int[])r.AdditionalProperties!["mor_depths"]!);
    }

    [Fact]
    public async Task Streaming_yields_the_pieces_then_finish_reason_and_usage()
    {
        var service = new FakeService { Pieces = ["Hel", "", "lo"] };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in new MoRChatClient(service).GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "hi")]))
            updates.Add(u);
        Assert.Equal(["Hel", "lo", ""], updates.Select(u => u.Text));
        Assert.All(updates[..^1], u => Assert.Null(u.FinishReason));
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
        var usage = Assert.Single(updates[^1].Contents.OfType<UsageContent>()).Details;
        Assert.Equal(3, usage.OutputTokenCount);
        var combined = updates.ToChatResponse();
        Assert.Equal("Hello", combined.Text);
        Assert.Equal(ChatFinishReason.Stop, combined.FinishReason);
    }

    [Fact]
    public async Task Unsupported_requests_and_bad_values_throw_naming_the_field()
    {
        var client = new MoRChatClient(new FakeService { ContextLength = 40 });
        ChatMessage[] hi = [new(ChatRole.User, "hi")];
        var tools = new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one")] };
        Assert.StartsWith("tools:", (await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(hi, tools))).Message);
        var image = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1 }, "image/png")]);
        Assert.StartsWith("messages[0].content:", (await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([image]))).Message);
        Assert.StartsWith("temperature:", (await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(hi, new ChatOptions { Temperature = -1 }))).Message);
        Assert.StartsWith("max_tokens:", (await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(hi, new ChatOptions { MaxOutputTokens = 0 }))).Message);
        Assert.StartsWith("messages:", (await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([]))).Message);
        var tooLong = new ChatMessage(ChatRole.User, new string('a', 40));
        Assert.StartsWith("messages: the prompt has", (await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([tooLong]))).Message);
    }

    [Fact]
    public async Task Over_the_real_generator_the_reply_is_the_greedy_continuation_of_the_template()
    {
        var client = new MoRChatClient(tiny.Generator);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
        ChatMessage[] messages = [new(ChatRole.User, "2+2=")];
        var r = await client.GetResponseAsync(messages, options);
        var (prompt, generation) = client.Prepare(messages, options);
        Assert.Equal("<|user|>\n2+2=\n<|assistant|>\n", tiny.Tokenizer.Decode(prompt));
        var (text, tokens, _) = await tiny.Generator.CompleteAsync(prompt, generation);
        Assert.Equal(text, r.Text);
        Assert.Equal(tokens.Count, r.Usage!.OutputTokenCount);
        Assert.InRange(tokens.Count, 1, 6);
        Assert.All((int[])r.AdditionalProperties!["mor_depths"]!, d => Assert.InRange(d, 0, 3));
        Assert.Same(tiny.Generator, client.GetService<IGenerationService>());
        Assert.Equal("MoRSharp", client.GetService<ChatClientMetadata>()?.ProviderName);
    }

    /// <summary>The byte tokenizer with a BOS id (its EOS id, 256), to see BOS prepended.</summary>
    private sealed class BosBytes : ITokenizer
    {
        private readonly ITokenizer bytes = TokenizerFactory.Bytes();
        public string Name => "bytes+bos";
        public int VocabSize => bytes.VocabSize;
        public int? EosId => bytes.EosId;
        public int? BosId => 256;
        public int[] Encode(string text) => bytes.Encode(text);
        public string Decode(ReadOnlySpan<int> ids) => bytes.Decode(ids);
        public string DecodeToken(int id) => bytes.DecodeToken(id);
        public void SaveTo(string directory) => bytes.SaveTo(directory);
    }
}
