using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using MoRSharp.Chat;
using MoRSharp.Inference;
using MoRSharp.Server;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AiFinishReason = Microsoft.Extensions.AI.ChatFinishReason;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;

#pragma warning disable OPENAI001   // seed and the legacy completions client are marked experimental

namespace MoRSharp.Tests.Server;

/// <summary>The server over the real generator, spoken to over loopback HTTP by the official OpenAI .NET client and by
/// Microsoft.Extensions.AI.OpenAI: the answers equal what the generator gives for the same prompt and options.</summary>
[Collection(nameof(ServerCollection))]
public class OpenAiClientTests(TinyModelFixture tiny)
{
    private static OpenAIClient Client(MoRServer server, string key = "unused") =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1"), RetryPolicy = new ClientRetryPolicy(0) });

    /// <summary>What the generator itself produces for a chat, through the same template.</summary>
    private async Task<(string text, int promptTokens, int generated, FinishReason finish)> Direct(string user, ChatOptions options)
    {
        var (prompt, generation) = new MoRChatClient(tiny.Generator).Prepare([new AiChatMessage(ChatRole.User, user)], options);
        var (text, tokens, finish) = await tiny.Generator.CompleteAsync(prompt, generation);
        return (text, prompt.Length, tokens.Count, finish);
    }

    [Fact]
    public async Task Models_lists_the_served_model()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        var models = (await Client(server).GetOpenAIModelClient().GetModelsAsync()).Value;
        Assert.Equal(TinyModelFixture.ModelId, Assert.Single(models).Id);
        Assert.Equal(TinyModelFixture.ModelId, (await Client(server).GetOpenAIModelClient().GetModelAsync(TinyModelFixture.ModelId)).Value.Id);
    }

    [Fact]
    public async Task Chat_completion_and_streaming_equal_the_generator()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        var chat = Client(server).GetChatClient(TinyModelFixture.ModelId);
        var options = new ChatCompletionOptions { Temperature = 0.8f, Seed = 7, MaxOutputTokenCount = 12 };
        var expected = await Direct("hello", new ChatOptions { Temperature = 0.8f, Seed = 7, MaxOutputTokens = 12 });

        ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage("hello")], options);
        Assert.Equal(expected.text, c.Content.Count == 0 ? "" : c.Content[0].Text);
        Assert.Equal(expected.finish == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, c.FinishReason);
        Assert.Equal(expected.promptTokens, c.Usage.InputTokenCount);
        Assert.Equal(expected.generated, c.Usage.OutputTokenCount);
        Assert.Equal(TinyModelFixture.ModelId, c.Model);

        var pieces = new List<string>();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        // (the client asks for usage in the stream itself: stream_options.include_usage)
        await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage("hello")], options))
        {
            pieces.AddRange(u.ContentUpdate.Select(p => p.Text));
            finish ??= u.FinishReason;
            usage ??= u.Usage;
        }
        Assert.True(pieces.Count(p => p.Length > 0) >= 2, $"expected the text in several chunks, got [{string.Join("|", pieces)}]");
        Assert.Equal(expected.text, string.Concat(pieces));
        Assert.Equal(c.FinishReason, finish);
        Assert.Equal(expected.generated, usage?.OutputTokenCount);
    }

    [Fact]
    public async Task Stop_sequences_end_the_reply_before_them()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        var chat = Client(server).GetChatClient(TinyModelFixture.ModelId);
        // Sampled with a fixed seed, so the same request gives the same text; then stop at a character that first appears inside it.
        for (int seed = 1; seed <= 8; seed++)
        {
            var options = new ChatCompletionOptions { Temperature = 1, Seed = seed, MaxOutputTokenCount = 24 };
            string full = (await chat.CompleteChatAsync([new UserChatMessage("abc")], options)).Value.Content.FirstOrDefault()?.Text ?? "";
            int at = Enumerable.Range(1, Math.Max(0, full.Length - 1)).FirstOrDefault(i => full[i] is > ' ' and < '\x7f' && full.IndexOf(full[i]) == i);
            if (at == 0) continue;
            options.StopSequences.Add(full[at].ToString());
            ChatCompletion stopped = await chat.CompleteChatAsync([new UserChatMessage("abc")], options);
            Assert.Equal(full[..at], stopped.Content.FirstOrDefault()?.Text ?? "");
            Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);

            string streamed = "";
            await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage("abc")], options))
                streamed += string.Concat(u.ContentUpdate.Select(p => p.Text));
            Assert.Equal(full[..at], streamed);
            return;
        }
        Assert.Fail("no seed gave a reply with a usable stop character");
    }

    [Fact]
    public async Task Completions_equal_the_generator_and_stream()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        var generation = new GenerationOptions { MaxTokens = 10, Sampling = SamplingOptions.Greedy };
        var (expected, tokens, finish) = await tiny.Generator.CompleteAsync(tiny.Tokenizer.Encode("The "), generation);

        string body = """{"model":"tiny","prompt":"The ","max_tokens":10,"temperature":0}""";
        var json = JsonNode.Parse(await SendThroughPipeline(Client(server), new Uri(server.Address, "v1/completions"), body))!;
        Assert.Equal("text_completion", (string?)json["object"]);
        Assert.Equal(expected, (string?)json["choices"]![0]!["text"]);
        Assert.Equal(finish == FinishReason.Length ? "length" : "stop", (string?)json["choices"]![0]!["finish_reason"]);
        Assert.Equal(4, (int?)json["usage"]!["prompt_tokens"]);
        Assert.Equal(tokens.Count, (int?)json["usage"]!["completion_tokens"]);
        Assert.Equal(tokens.Count, json["mor_depths"]!.AsArray().Count);

        using var http = ServerTestUtil.Http();
        var (status, echoed) = await ServerTestUtil.Post(http, server.Address, "v1/completions",
            """{"model":"tiny","prompt":[[84,104,101,32]],"max_tokens":10,"temperature":0,"echo":true}""");   // "The " as token ids
        Assert.Equal(200, status);
        Assert.Equal("The " + expected, (string?)echoed!["choices"]![0]!["text"]);

        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server.Address, "v1/completions"))
            { Content = ServerTestUtil.Json("""{"model":"tiny","prompt":"The ","max_tokens":10,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}""") };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await ServerTestUtil.ReadEvents(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.Equal(expected, string.Concat(chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => (string?)c["choices"]![0]!["text"])));
        Assert.Equal(tokens.Count, (int?)chunks[^1]["usage"]!["completion_tokens"]);
    }

    /// <summary>The OpenAI .NET client 2.x has no public /v1/completions API (its legacy client is internal), so the request
    /// goes through the client's own pipeline: its transport, API-key policy and error handling.</summary>
    private static async Task<string> SendThroughPipeline(OpenAIClient client, Uri uri, string body)
    {
        using var message = client.Pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = uri;
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromString(body));
        message.ResponseClassifier = PipelineMessageClassifier.Create([200]);
        await client.Pipeline.SendAsync(message);
        if (message.Response!.IsError) throw new ClientResultException(message.Response);
        return message.Response.Content.ToString();
    }

    [Fact]
    public async Task Microsoft_Extensions_AI_OpenAI_client_gets_the_same_reply()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        IChatClient client = Client(server).GetChatClient(TinyModelFixture.ModelId).AsIChatClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 8 };
        var expected = await Direct("hi", options);

        var r = await client.GetResponseAsync("hi", options);
        Assert.Equal(expected.text, r.Text);
        Assert.Equal(expected.promptTokens, r.Usage?.InputTokenCount);
        Assert.Equal(expected.generated, r.Usage?.OutputTokenCount);
        Assert.Equal(expected.finish == FinishReason.Length ? AiFinishReason.Length : AiFinishReason.Stop, r.FinishReason);

        var streamed = await client.GetStreamingResponseAsync("hi", options).ToChatResponseAsync();
        Assert.Equal(expected.text, streamed.Text);
        Assert.Equal(r.FinishReason, streamed.FinishReason);
    }
}
