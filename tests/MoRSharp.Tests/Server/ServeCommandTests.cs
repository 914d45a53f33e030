using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using MoRSharp.Cli;
using MoRSharp.Cli.Commands;
using MoRSharp.Tests.Cli;

namespace MoRSharp.Tests.Server;

/// <summary><c>mor serve</c> end to end: loads the model folder, listens on loopback, answers with the key, stops on request.</summary>
[Collection(nameof(ServerCollection))]
public class ServeCommandTests(TinyModelFixture tiny)
{
    [Fact]
    public async Task Serve_loads_the_folder_answers_and_stops()
    {
        var command = new ServeCommand();
        var options = CommandLine.Parse(command, ["--model", tiny.Dir, "--port", "0", "--api-key", "k1", "--max-queue", "2", "--max-batch", "4"]);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        using var stop = new CancellationTokenSource();
        var address = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var run = Task.Run(() => ServeCommand.Run(options, TextWriter.Synchronized(stdout), TextWriter.Synchronized(stderr), stop.Token, address.SetResult));
        var uri = await address.Task.WaitAsync(TimeSpan.FromSeconds(60));
        try
        {
            Assert.Equal(IPAddress.Loopback.ToString(), uri.Host);                   // loopback unless --host says otherwise
            using var http = ServerTestUtil.Http();
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(new Uri(uri, "v1/models"))).StatusCode);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "k1");
            var models = JsonNode.Parse(await http.GetStringAsync(new Uri(uri, "v1/models")))!;
            Assert.Equal(TinyModelFixture.ModelId, (string?)models["data"]![0]!["id"]);   // the folder's name
            var (status, json) = await ServerTestUtil.Post(http, uri, "v1/completions", "{\"model\":\"tiny\",\"prompt\":\"a\",\"max_tokens\":3}");
            Assert.Equal(200, status);
            Assert.InRange((int)json!["usage"]!["completion_tokens"]!, 0, 3);
        }
        finally { stop.Cancel(); }
        Assert.Equal(CommandLine.ExitOk, await run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"serving 'tiny'", stdout.ToString());
        Assert.Contains(uri.ToString(), stdout.ToString());
        Assert.EndsWith("stopped" + Environment.NewLine, stdout.ToString());
    }

    [Theory]
    [InlineData("--host", "example.com", "--host: expected an IP address")]
    [InlineData("--port", "70000", "--port: must be in 0..65535")]
    [InlineData("--max-queue", "-1", "--max-queue: must be at least 0")]
    public void Bad_options_are_usage_errors(string option, string value, string message)
    {
        var (code, _, err) = CliRunner.Run("serve", "--model", tiny.Dir, option, value);
        Assert.Equal(CommandLine.ExitUsage, code);
        Assert.Contains(message, err);
    }

    [Fact]
    public void A_missing_model_folder_is_an_error()
    {
        var (code, _, err) = CliRunner.Run("serve", "--model", Path.Combine(tiny.Dir, "nope"), "--port", "0");
        Assert.Equal(CommandLine.ExitError, code);
        Assert.Contains("does not exist", err);
    }
}
