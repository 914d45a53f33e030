namespace MoRSharp.Data;

/// <summary>
/// A problem with training data or tokenizer files: a missing or empty corpus, a malformed JSONL line, a missing Parquet
/// column, a corrupted token shard, an unsupported tokenizer.json. The message names the file (and the line, field or
/// column) so it can be shown to the user as is.
/// </summary>
/// <remarks>It derives from <see cref="IOException"/> because it is an input error: callers (the <c>mor</c> CLI among them)
/// that already report <see cref="IOException"/>s as one-line errors handle it without knowing this type.</remarks>
public sealed class DataException : IOException
{
    public DataException(string message) : base(message) { }
    public DataException(string message, Exception inner) : base(message, inner) { }
}
