using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Data;

/// <summary>What <see cref="DataPreparer.Prepare"/> reads and writes.</summary>
public sealed record DataPrepareOptions
{
    /// <summary>Files or folders (searched recursively) of <c>.txt</c>, <c>.jsonl</c>, <c>.parquet</c>.</summary>
    public required IReadOnlyList<string> Inputs { get; init; }
    /// <summary>Output folder: <c>train.bin</c>, <c>val.bin</c>, <c>meta.json</c> and <c>tokenizer/</c> are written there.</summary>
    public required string OutputDirectory { get; init; }
    /// <summary>How files become documents (JSONL field, Parquet column, one document per text file, skipping bad lines).</summary>
    public CorpusOptions Corpus { get; init; } = new();
    /// <summary>Probability that a document goes to validation (ignored when <see cref="ValDocs"/> is set). In [0, 1).</summary>
    public double ValFraction { get; init; } = 0.01;
    /// <summary>Exactly this many documents go to validation, chosen uniformly at random (costs one extra pass to count documents).</summary>
    public long? ValDocs { get; init; }
    /// <summary>Seed of the train/validation split.</summary>
    public long Seed { get; init; }
}

/// <summary>Progress of <see cref="DataPreparer.Prepare"/>: <paramref name="Phase"/> is <c>counting</c> (the extra pass of
/// <see cref="DataPrepareOptions.ValDocs"/>) or <c>tokenizing</c>; bytes are of the input files.</summary>
public sealed record DataProgress(string Phase, long BytesRead, long TotalBytes, long Documents, long Tokens, string? CurrentFile)
{
    /// <summary>Fraction done in this phase, in [0, 1].</summary>
    public double Fraction => TotalBytes <= 0 ? 1 : Math.Clamp((double)BytesRead / TotalBytes, 0, 1);
}

/// <summary>One output split. <see cref="Tokens"/> counts every token in the shard, the EOS after each document included;
/// <see cref="Bytes"/> is the UTF-8 size of the documents' text; <see cref="BytesPerToken"/> = Bytes / Tokens.</summary>
public sealed record SplitSummary(string Name, string Path, long Documents, long Tokens, long Bytes)
{
    public double BytesPerToken => Tokens == 0 ? 0 : (double)Bytes / Tokens;
}

/// <summary>What <see cref="DataPreparer.Prepare"/> did.</summary>
public sealed record DataPrepareResult(
    string OutputDirectory,
    string MetaPath,
    string TokenizerDirectory,
    SplitSummary Train,
    SplitSummary Val,
    string TokenizerName,
    int VocabSize,
    int EosId,
    long ReplacedBytes,
    long SkippedLines,
    IReadOnlyList<string> BadLineExamples,
    long EmptyDocuments,
    IReadOnlyList<CorpusFile> Sources,
    IReadOnlyList<string> Warnings,
    TimeSpan Elapsed);

/// <summary>
/// The backend of <c>mor data prepare</c>: streams documents from the inputs (<see cref="CorpusReader"/>), tokenizes each,
/// appends EOS after it, and writes the tokens to <c>train.bin</c> or <c>val.bin</c> (<see cref="TokenShardWriter"/>), then
/// <c>meta.json</c> and a copy of the tokenizer (<c>tokenizer/</c>, loadable with <see cref="TokenizerFactory.Load"/>).
/// </summary>
/// <remarks>
/// <para><b>Split.</b> Documents are numbered 0, 1, 2, … in reading order (empty documents and skipped lines do not count).
/// With a fraction, document i goes to validation iff <c>SplitMix64.HashToUnit(seed, i) &lt; fraction</c>. With
/// <see cref="DataPrepareOptions.ValDocs"/> = N, a first pass counts the D documents and selection sampling picks exactly
/// N of them uniformly (SplitMix64 seeded by the seed). The same inputs, options, seed and tokenizer always give
/// byte-identical shards and <c>meta.json</c>.</para>
/// <para><b>Memory</b> is bounded by one document chunk (≤ <see cref="CorpusOptions.MaxChunkChars"/> characters, or one
/// text line / JSONL line / Parquet row group if longer) plus 1 MiB of write buffer per split.</para>
/// <para><b>Tokens.</b> Nothing but EOS is added: no BOS (see <see cref="ITokenizer"/>).</para>
/// </remarks>
public static class DataPreparer
{
    public const string TrainFile = "train.bin";
    public const string ValFile = "val.bin";
    public const string MetaFile = "meta.json";
    public const string TokenizerFolder = "tokenizer";

    /// <summary>Prepares token shards; see the class remarks.</summary>
    /// <exception cref="DataException">Missing inputs, an empty corpus, a bad JSONL line, a missing Parquet column, a tokenizer without EOS…</exception>
    public static DataPrepareResult Prepare(DataPrepareOptions options, ITokenizer tokenizer, IProgress<DataProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var clock = Stopwatch.StartNew();
        if (tokenizer.EosId is not int eos)
            throw new DataException($"tokenizer '{tokenizer.Name}' has no EOS token, which is needed to separate documents");
        if (options.ValDocs is null && !(options.ValFraction >= 0 && options.ValFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.ValFraction, "the validation fraction must be in [0, 1)");
        if (options.ValDocs is < 0) throw new ArgumentOutOfRangeException(nameof(options), options.ValDocs, "the number of validation documents must be ≥ 0");

        var reader = new CorpusReader(options.Inputs, options.Corpus);
        var warnings = new List<string>();
        var throttle = Stopwatch.StartNew();
        long lastReport = long.MinValue;

        void Report(string phase, long docs, long tokens, bool force)
        {
            if (progress is null) return;
            long now = throttle.ElapsedMilliseconds;
            if (!force && now - lastReport < 100) return;
            lastReport = now;
            progress.Report(new DataProgress(phase, reader.BytesRead, reader.TotalBytes, docs, tokens, reader.CurrentFile));
        }

        // ---- optional counting pass for an exact number of validation documents
        long totalDocs = -1;
        if (options.ValDocs is long wanted)
        {
            long docs = 0;
            foreach (var chunk in reader.ReadChunks())
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (chunk.IsDocumentEnd) docs++;
                Report("counting", docs, 0, false);
            }
            Report("counting", docs, 0, true);
            if (docs == 0) throw Empty(reader);
            if (wanted >= docs)
                throw new DataException($"--val-docs {wanted} leaves no training documents: the corpus has {docs} document{(docs == 1 ? "" : "s")}");
            totalDocs = docs;
        }

        string outDir = Path.GetFullPath(options.OutputDirectory);
        Directory.CreateDirectory(outDir);
        string trainPath = Path.Combine(outDir, TrainFile);
        string valPath = Path.Combine(outDir, ValFile);
        int vocab = tokenizer.VocabSize;
        long[] docCount = new long[2], tokenCount = new long[2], byteCount = new long[2];

        using (var train = new TokenShardWriter(trainPath, vocab, eos))
        using (var val = new TokenShardWriter(valPath, vocab, eos))
        {
            var selector = new SplitMix64(SplitMix64.Mix(unchecked((ulong)options.Seed ^ 0xD1B54A32D192ED03UL)));
            long docIndex = 0, valSelected = 0;
            int split = 0;  // 0 = train, 1 = val
            long tokensTotal = 0;
            foreach (var chunk in reader.ReadChunks())
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (chunk.IsDocumentStart)
                {
                    bool toVal;
                    if (options.ValDocs is long n)
                    {
                        long need = n - valSelected, left = totalDocs - docIndex;
                        toVal = left > 0 && need > 0 && selector.NextLong(left) < need;
                    }
                    else
                    {
                        toVal = options.ValFraction > 0 && SplitMix64.HashToUnit(options.Seed, docIndex) < options.ValFraction;
                    }
                    if (toVal) valSelected++;
                    split = toVal ? 1 : 0;
                    docIndex++;
                }
                var writer = split == 1 ? val : train;
                int[] ids = tokenizer.Encode(chunk.Text);
                writer.Append(ids);
                tokenCount[split] += ids.Length;
                byteCount[split] += Encoding.UTF8.GetByteCount(chunk.Text);
                tokensTotal += ids.Length;
                if (chunk.IsDocumentEnd)
                {
                    writer.Append(eos);
                    tokenCount[split]++;
                    tokensTotal++;
                    docCount[split]++;
                }
                Report("tokenizing", docCount[0] + docCount[1], tokensTotal, false);
            }
            Report("tokenizing", docCount[0] + docCount[1], tokensTotal, true);
            if (docCount[0] + docCount[1] == 0) throw Empty(reader);
            if (totalDocs >= 0 && docIndex != totalDocs)
                throw new DataException($"the inputs changed while being read: counted {totalDocs} documents, then read {docIndex}");
            train.Complete();
            val.Complete();
        }

        if (docCount[1] == 0 && (options.ValDocs ?? 0) == 0 && options.ValFraction > 0)
            warnings.Add($"the validation split is empty ({docCount[0]} document{(docCount[0] == 1 ? "" : "s")} × fraction {options.ValFraction.ToString(CultureInfo.InvariantCulture)}); use --val-docs N or a larger --val-fraction");
        if (docCount[0] == 0)
            warnings.Add("the training split is empty: every document went to validation");
        if (reader.ReplacedBytes > 0)
            warnings.Add($"{reader.ReplacedBytes} bytes were not valid UTF-8 and were replaced with U+FFFD");
        if (reader.SkippedLines > 0)
            warnings.Add($"{reader.SkippedLines} bad JSONL line{(reader.SkippedLines == 1 ? " was" : "s were")} skipped, e.g. {reader.BadLineExamples[0]}");

        string tokDir = Path.Combine(outDir, TokenizerFolder);
        tokenizer.SaveTo(tokDir);

        var trainSummary = new SplitSummary("train", trainPath, docCount[0], tokenCount[0], byteCount[0]);
        var valSummary = new SplitSummary("val", valPath, docCount[1], tokenCount[1], byteCount[1]);
        string metaPath = Path.Combine(outDir, MetaFile);
        WriteMeta(metaPath, options, tokenizer, eos, trainSummary, valSummary, reader);

        return new DataPrepareResult(outDir, metaPath, tokDir, trainSummary, valSummary, tokenizer.Name, vocab, eos,
            reader.ReplacedBytes, reader.SkippedLines, reader.BadLineExamples.ToList(), reader.EmptyDocuments, reader.Files,
            warnings, clock.Elapsed);
    }

    private static DataException Empty(CorpusReader reader)
    {
        string files = reader.Files.Count == 1 ? reader.Files[0].Path : $"{reader.Files.Count} files";
        var why = new List<string>();
        if (reader.EmptyDocuments > 0) why.Add($"{reader.EmptyDocuments} empty document{(reader.EmptyDocuments == 1 ? "" : "s")}");
        if (reader.SkippedLines > 0) why.Add($"{reader.SkippedLines} skipped line{(reader.SkippedLines == 1 ? "" : "s")}");
        return new DataException($"the corpus is empty: no documents in {files}" + (why.Count > 0 ? $" ({string.Join(", ", why)})" : ""));
    }

    private static void WriteMeta(string path, DataPrepareOptions o, ITokenizer tok, int eos, SplitSummary train, SplitSummary val, CorpusReader reader)
    {
        JsonObject Split(SplitSummary s) => new()
        {
            ["file"] = Path.GetFileName(s.Path),
            ["documents"] = s.Documents,
            ["tokens"] = s.Tokens,
            ["bytes"] = s.Bytes,
            ["bytes_per_token"] = Math.Round(s.BytesPerToken, 6),
        };
        var sources = new JsonArray();
        foreach (var f in reader.Files)
            sources.Add(new JsonObject { ["path"] = f.Path, ["format"] = f.Format.ToString().ToLowerInvariant(), ["bytes"] = f.Bytes });
        var meta = new JsonObject
        {
            ["format"] = "morsharp-token-shards",
            ["version"] = 1,
            ["tokenizer"] = new JsonObject
            {
                ["name"] = tok.Name,
                ["vocab_size"] = tok.VocabSize,
                ["eos_id"] = eos,
                ["bos_id"] = tok.BosId,
                ["dir"] = TokenizerFolder,
            },
            ["dtype"] = TokenShard.DTypeFor(tok.VocabSize) == TokenShard.DTypeUInt16 ? "uint16" : "uint32",
            ["seed"] = o.Seed,
            ["val_fraction"] = o.ValDocs is null ? o.ValFraction : null,
            ["val_docs"] = o.ValDocs,
            ["splits"] = new JsonObject { ["train"] = Split(train), ["val"] = Split(val) },
            ["documents_separated_by"] = "eos",
            ["replaced_bytes"] = reader.ReplacedBytes,
            ["skipped_lines"] = reader.SkippedLines,
            ["empty_documents"] = reader.EmptyDocuments,
            ["options"] = new JsonObject
            {
                ["field"] = o.Corpus.JsonlField,
                ["column"] = o.Corpus.ParquetColumn,
                ["doc_per_file"] = o.Corpus.DocumentPerFile,
                ["skip_bad_lines"] = o.Corpus.SkipBadLines,
            },
            ["sources"] = sources,
        };
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, meta.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.Move(tmp, path, overwrite: true);
    }
}
