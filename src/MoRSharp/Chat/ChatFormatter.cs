using System.Text;
using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Chat;


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

/// <summary>A Hugging Face chat template (<see cref="ChatTemplate"/>) as a formatter; the reply ends at EOS (or its text).</summary>
public sealed class TemplateChatFormatter(ChatTemplate template) : IChatFormatter
{
    public ChatTemplate Template => template;
    public IReadOnlyList<string> StopStrings { get; } = template.EosToken is { Length: > 0 } eos ? [eos] : [];
    public string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt) => template.Render(turns, addGenerationPrompt);
}

/// <summary>Picks the chat format of a model folder and turns a conversation into prompt ids.</summary>
public static class ChatFormats
{
    /// <summary>The folder's own chat template where it has one, else <see cref="PlainChatFormatter"/>.</summary>
    public static IChatFormatter ForModelFolder(string dir, ITokenizer? tokenizer = null)
    {
        var template = ChatTemplate.FromModelFolder(dir, tokenizer);
        return template.IsDefault ? PlainChatFormatter.Instance : new TemplateChatFormatter(template);
    }

    public static string Describe(IChatFormatter f) => f is TemplateChatFormatter t
        ? $"chat template from {Path.GetFileName(t.Template.Origin)}"
        : "plain <|role|> format: the model has no chat template";

    /// <summary>
    /// Prompt ids for a conversation: the rendering with special-token strings as their tokens (a template writes
    /// <c>&lt;|im_start|&gt;</c> or <c>{{ bos_token }}</c> as text), and BOS in front unless the rendering already starts with it.
    /// </summary>
    public static int[] Encode(IChatFormatter formatter, ITokenizer tokenizer, IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt = true)
    {
        var ids = tokenizer.EncodeWithSpecialTokens(formatter.Render(turns, addGenerationPrompt));
        if (tokenizer.BosId is { } bos && (ids.Length == 0 || ids[0] != bos)) ids = [bos, .. ids];
        return ids;
    }
}
