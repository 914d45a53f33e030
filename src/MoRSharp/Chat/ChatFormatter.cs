using System.Text;

namespace MoRSharp.Chat;

/// <summary>One turn of a conversation: a role (<c>system</c>, <c>user</c>, <c>assistant</c>, <c>tool</c>) and its text.</summary>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// Turns a conversation into the prompt text a model was trained on (a chat template), and names the strings that end the
/// assistant's turn. <see cref="MoRChatClient"/> and the server's <c>/v1/chat/completions</c> use it; a model folder's own
/// Hugging Face chat template plugs in through this interface.
/// </summary>
public interface IChatFormatter
{
    /// <summary>The prompt text for <paramref name="turns"/>; with <paramref name="addGenerationPrompt"/> it ends where the
    /// assistant's reply begins. BOS is not part of the text: the caller prepends the tokenizer's BOS id when it has one.</summary>
    string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt);

    /// <summary>Strings that end the assistant's turn (generation stops before them), besides the tokenizer's EOS.</summary>
    IReadOnlyList<string> StopStrings { get; }
}

/// <summary>
/// The plain default template, for models trained without a chat template of their own:
/// <code>
/// &lt;|system|&gt;
/// You are terse.
/// &lt;|user|&gt;
/// Hello
/// &lt;|assistant|&gt;
/// </code>
/// Each turn is <c>&lt;|role|&gt;\n</c> + content + <c>\n</c>; the generation prompt is <c>&lt;|assistant|&gt;\n</c>. The reply
/// ends at the next role marker (<c>\n&lt;|</c>) or EOS. The markers are ordinary text to the tokenizer (no special tokens).
/// </summary>
public sealed class PlainChatFormatter : IChatFormatter
{
    public static PlainChatFormatter Instance { get; } = new();

    public IReadOnlyList<string> StopStrings { get; } = ["\n<|"];

    public string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt)
    {
        var sb = new StringBuilder();
        foreach (var t in turns) sb.Append("<|").Append(t.Role).Append("|>\n").Append(t.Content).Append('\n');
        if (addGenerationPrompt) sb.Append("<|assistant|>\n");
        return sb.ToString();
    }
}

/// <summary>Picks the chat format of a model folder.</summary>
public static class ChatFormats
{
    /// <summary>The folder's own chat template where it has one, else <see cref="PlainChatFormatter"/>.</summary>
    public static IChatFormatter ForModelFolder(string dir) => PlainChatFormatter.Instance;

    public static string Describe(IChatFormatter f) => f is PlainChatFormatter ? "plain <|role|> format: the model has no chat template" : "the model's chat template";
}
