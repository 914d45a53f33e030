using System.ClientModel;
using System.ClientModel.Primitives;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MoRSharp.Server;
using OpenAI;
using OpenAI.Chat;

namespace MoRSharp.Tests.Server;

/// <summary>Errors, limits, auth, queueing, metrics and cancellation, over loopback HTTP.</summary>
[Collection(nameof(ServerCollection))]
public class ServerSafetyTests(TinyModelFixture tiny)
{
    private const string Hi = "'messages':[{'role':'user','content':'hi'}]";
    private const string LongText = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

    /// <summary>JSON written with single quotes (readable in attributes) → real JSON.</summary>
    private static string Q(string json) => json.Replace('\'', '"');

    [Theory]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'temperature':3}", "temperature", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'top_p':'high'}", "top_p", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'max_tokens':0}", "max_tokens", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'max_completion_tokens':100000}", "max_completion_tokens", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'n':2}", "n", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'stop':['a','b','c','d','e']}", "stop", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'seed':1.5}", "seed", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny'," + Hi + ",'frequency_penalty':0.5}", "frequency_penalty", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny','messages':[]}", "messages", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny','messages':[{'role':'robot','content':'hi'}]}", "messages[0].role", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny','messages':[{'role':'user','content':[{'type':'image_url'}]}]}", "messages[0].content[0].type", null)]
    [InlineData("v1/chat/completions", "{" + Hi + "}", "model", null)]
    [InlineData("v1/chat/completions", "{'model':'tiny','messages':[{'role':'user','content':'" + LongText + "'}]}", "messages", "context_length_exceeded")]
    [InlineData("v1/completions", "{'model':'tiny','prompt':[999]}", "prompt", null)]
    [InlineData("v1/completions", "{'model':'tiny','prompt':'" + LongText + "'}", "prompt", "context_length_exceeded")]
    [InlineData("v1/completions", "{'model':'tiny','prompt':'x','logprobs':2}", "logprobs", null)]
    [InlineData("v1/completions", "{'model':'tiny','prompt':['a','b']}", "prompt", null)]
    [InlineData("v1/completions", "{'model':'tiny','prompt':'x','stream':'yes'}", "stream", null)]
    public async Task Invalid_requests_get_400_naming_the_field(string path, string body, string param, string? code)
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        using var http = ServerTestUtil.Http();
        var (status, json) = await ServerTestUtil.Post(http, server.Address, path, Q(body));
        Assert.Equal(400, status);
        var error = json!["error"]!;
        Assert.Equal(param, (string?)error["param"]);
        Assert.Equal(code, (string?)error["code"]);
        Assert.Equal("invalid_request_error", (string?)error["type"]);
        Assert.StartsWith(param + ":", (string?)error["message"]);
    }

    [Fact]
    public async Task Bad_json_unknown_model_and_unknown_path_get_error_objects()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        using var http = ServerTestUtil.Http();
        var (status, json) = await ServerTestUtil.Post(http, server.Address, "v1/chat/completions", "{\"model\": ");
        Assert.Equal((400, "invalid_json"), (status, (string?)json!["error"]!["code"]));
        (status, json) = await ServerTestUtil.Post(http, server.Address, "v1/chat/completions", Q("{'model':'gpt-4',"+ Hi + "}"));
        Assert.Equal((404, "model_not_found", "model"), (status, (string?)json!["error"]!["code"], (string?)json["error"]!["param"]));
        (status, json) = await ServerTestUtil.Post(http, server.Address, "v1/embeddings", "{}");
        Assert.Equal((404, "unknown_url"), (status, (string?)json!["error"]!["code"]));
    }

    [Fact]
    public async Task The_official_client_sees_400_with_the_field_in_the_message()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        var chat = new ChatClient(TinyModelFixture.ModelId, new ApiKeyCredential("x"),
            new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1"), RetryPolicy = new ClientRetryPolicy(0) });
        var e = await Assert.ThrowsAsync<ClientResultException>(() =>
            chat.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { Temperature = 2.5f }));
        Assert.Equal(400, e.Status);
        Assert.Contains("temperature: must be in [0, 2], got 2.5", e.Message);
    }

    [Fact]
    public async Task With_an_api_key_v1_requests_need_the_bearer_token()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator, new ServerOptions { ApiKey = "s3cret" });
        using var http = ServerTestUtil.Http();
        foreach (string? auth in new[] { null, "Bearer wrong", "Bearer s3cret2", "Basic s3cret" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(server.Address, "v1/models"));
            if (auth is not null) request.Headers.TryAddWithoutValidation("Authorization", auth);
            using var r = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
            Assert.Equal("invalid_api_key", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["code"]);
        }
        var (status, _) = await ServerTestUtil.Post(http, server.Address, "v1/chat/completions", Q("{'model':'tiny'," + Hi + "}"));
        Assert.Equal(401, status);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri(server.Address, "health"))).StatusCode);   // probes need no key

        var options = new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1"), RetryPolicy = new ClientRetryPolicy(0) };
        var wrong = new ChatClient(TinyModelFixture.ModelId, new ApiKeyCredential("nope"), options);
        Assert.Equal(401, (await Assert.ThrowsAsync<ClientResultException>(() => wrong.CompleteChatAsync("hi"))).Status);
        var right = new ChatClient(TinyModelFixture.ModelId, new ApiKeyCredential("s3cret"), options);
        ChatCompletion c = await right.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.InRange(c.Usage.OutputTokenCount, 0, 2);
    }

    [Fact]
    public async Task A_full_queue_gets_429_with_retry_after()
    {
        using var hold = new SemaphoreSlim(0);
        var fake = new FakeService { Hold = hold };
        await using var server = await ServerTestUtil.Start(new QueueLimiter(fake, maxActive: 1, maxQueue: 1));
        using var http = ServerTestUtil.Http();
        string body = Q("{'model':'tiny'," + Hi + "}");
        var first = http.PostAsync(new Uri(server.Address, "v1/chat/completions"), ServerTestUtil.Json(body));
        await fake.Started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var second = http.PostAsync(new Uri(server.Address, "v1/chat/completions"), ServerTestUtil.Json(body));   // waits in the queue
        await WaitFor(async () => (await Metrics(http, server.Address)).Contains("mor_queue_depth{model=\"tiny\"} 1"));

        using var third = await http.PostAsync(new Uri(server.Address, "v1/chat/completions"), ServerTestUtil.Json(body));
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(1), third.Headers.RetryAfter?.Delta);
        Assert.Equal("rate_limit_exceeded", (string?)JsonNode.Parse(await third.Content.ReadAsStringAsync())!["error"]!["code"]);

        hold.Release(2);
        Assert.Equal(HttpStatusCode.OK, (await first).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await second).StatusCode);
        hold.Release();                                          // the queue has room again
        using var retry = await http.PostAsync(new Uri(server.Address, "v1/chat/completions"), ServerTestUtil.Json(body));
        Assert.Equal(HttpStatusCode.OK, retry.StatusCode);
    }

    [Fact]
    public async Task Without_max_tokens_chat_gets_the_server_limit_and_completions_get_16()
    {
        var fake = new FakeService { ContextLength = 64 };
        await using var server = await ServerTestUtil.Start(fake, new ServerOptions { MaxTokensLimit = 20 });
        using var http = ServerTestUtil.Http();
        Assert.Equal(200, (await ServerTestUtil.Post(http, server.Address, "v1/chat/completions", Q("{'model':'tiny'," + Hi + "}"))).status);
        Assert.Equal(200, (await ServerTestUtil.Post(http, server.Address, "v1/completions", Q("{'model':'tiny','prompt':'x'}"))).status);
        Assert.Equal(400, (await ServerTestUtil.Post(http, server.Address, "v1/completions", Q("{'model':'tiny','prompt':'x','max_tokens':21}"))).status);
        Assert.Equal([20, 16], fake.Calls.Select(c => c.options.MaxTokens));
    }

    [Fact]
    public async Task Oversized_bodies_get_413()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator, new ServerOptions { MaxBodyBytes = 4096 });
        using var http = ServerTestUtil.Http();
        string big = Q("{'model':'tiny','messages':[{'role':'user','content':'" + new string('a', 10_000) + "'}]}");
        // Repeated, with and without a Content-Length (chunked): answering before the body is read used to lose the
        // response to a TCP reset now and then.
        for (int i = 0; i < 20; i++)
        {
            bool chunked = i % 2 == 1;
            HttpContent content = chunked ? new StreamContent(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(big))) : ServerTestUtil.Json(big);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server.Address, "v1/chat/completions")) { Content = content };
            request.Headers.TransferEncodingChunked = chunked;
            using var r = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
            Assert.Equal("request_too_large", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["error"]!["code"]);
        }
        var (status, _) = await ServerTestUtil.Post(http, server.Address, "v1/chat/completions", Q("{'model':'tiny'," + Hi + ",'max_tokens':1}"));
        Assert.Equal(200, status);   // the connection pool is fine afterwards
    }

    [Fact]
    public async Task Streams_are_server_sent_events_ending_in_DONE()
    {
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        using var http = ServerTestUtil.Http();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server.Address, "v1/chat/completions"))
            { Content = ServerTestUtil.Json(Q("{'model':'tiny'," + Hi + ",'max_tokens':5,'stream':true,'stream_options':{'include_usage':true}}")) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await ServerTestUtil.ReadEvents(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Single(chunks.Select(c => (string?)c["id"]).Distinct());
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        var finish = chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => (string?)c["choices"]![0]!["finish_reason"]).ToList();
        Assert.All(finish[..^1], Assert.Null);
        Assert.Contains(finish[^1], new[] { "stop", "length" });
        Assert.Empty(chunks[^1]["choices"]!.AsArray());
        Assert.InRange((int)chunks[^1]["usage"]!["completion_tokens"]!, 0, 5);
    }

    [Fact]
    public async Task Metrics_are_prometheus_text_counting_tokens_depths_and_requests()
    {
        var before = tiny.Generator.Metrics;
        await using var server = await ServerTestUtil.Start(tiny.Generator);
        using var http = ServerTestUtil.Http();
        var (status, json) = await ServerTestUtil.Post(http, server.Address, "v1/completions", Q("{'model':'tiny','prompt':'ab','max_tokens':6,'temperature':0}"));
        Assert.Equal(200, status);
        int generated = (int)json!["usage"]!["completion_tokens"]!;
        await ServerTestUtil.Post(http, server.Address, "v1/completions", Q("{'model':'tiny','prompt':'ab','temperature':-1}"));

        using var response = await http.GetAsync(new Uri(server.Address, "metrics"));
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        var samples = ParsePrometheus(await response.Content.ReadAsStringAsync());
        Assert.Equal(before.TokensGenerated + generated, samples["mor_tokens_generated_total{model=\"tiny\"}"]);
        double byDepth = samples.Where(kv => kv.Key.StartsWith("mor_tokens_by_exit_depth_total{", StringComparison.Ordinal)).Sum(kv => kv.Value);
        Assert.Equal(samples["mor_tokens_generated_total{model=\"tiny\"}"], byDepth);
        Assert.Equal(4, samples.Keys.Count(k => k.StartsWith("mor_tokens_by_exit_depth_total{", StringComparison.Ordinal)));   // depths 0..N_r
        Assert.True(samples["mor_tokens_per_second{model=\"tiny\"}"] > 0);
        Assert.Equal(0, samples["mor_queue_depth{model=\"tiny\"}"]);
        Assert.Equal(0, samples["mor_active_sequences{model=\"tiny\"}"]);
        Assert.Equal(1, samples["mor_http_requests_total{endpoint=\"/v1/completions\",code=\"200\"}"]);
        Assert.Equal(1, samples["mor_http_requests_total{endpoint=\"/v1/completions\",code=\"400\"}"]);
        Assert.Equal(1, samples["mor_http_requests_in_flight"]);   // this scrape
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_client_that_disconnects_cancels_its_generation(bool stream)
    {
        var fake = new FakeService { Endless = true, Delay = TimeSpan.FromMilliseconds(20) };
        await using var server = await ServerTestUtil.Start(fake);
        using var http = ServerTestUtil.Http();
        using var abort = new CancellationTokenSource();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server.Address, "v1/chat/completions"))
            { Content = ServerTestUtil.Json(Q("{'model':'tiny'," + Hi + ",'stream':" + (stream ? "true" : "false") + "}")) };
        if (stream)
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {", await reader.ReadLineAsync());
        }   // disposing the unread response closes the connection
        else
        {
            var pending = http.SendAsync(request, abort.Token);
            await fake.Started.Task.WaitAsync(TimeSpan.FromSeconds(10));
            abort.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        }
        await fake.Cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await WaitFor(async () => (await Metrics(http, server.Address)).Contains("endpoint=\"/v1/chat/completions\",code=\"499\"} 1"));
    }

    private static async Task<string> Metrics(HttpClient http, Uri server) => await http.GetStringAsync(new Uri(server, "metrics"));

    private static async Task WaitFor(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met within 10 s");
            await Task.Delay(20);
        }
    }

    /// <summary>Sample lines <c>name{labels} value</c> keyed by name+labels; every line must be a comment or a valid sample.</summary>
    private static Dictionary<string, double> ParsePrometheus(string text)
    {
        var sample = new Regex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*=""[^""]*""(,[a-zA-Z_][a-zA-Z0-9_]*=""[^""]*"")*\})?) (\S+)$");
        var result = new Dictionary<string, double>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# HELP ", StringComparison.Ordinal) || line.StartsWith("# TYPE ", StringComparison.Ordinal)) continue;
            var m = sample.Match(line);
            Assert.True(m.Success, $"not a Prometheus sample line: '{line}'");
            result.Add(m.Groups[1].Value, double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture));
        }
        return result;
    }
}
