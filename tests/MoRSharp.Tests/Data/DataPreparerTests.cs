using System.Text;
using System.Text.Json.Nodes;
using MoRSharp.Data;
using MoRSharp.Data.Tokenizers;

namespace MoRSharp.Tests.Data;

public class DataPreparerTests
{
    private static readonly ITokenizer Bytes = TokenizerFactory.Bytes();

    private static DataPrepareResult Prepare(TempDir dir, IReadOnlyList<string> inputs, CorpusOptions? corpus = null,
        double valFraction = 0, long? valDocs = null, long seed = 0, ITokenizer? tokenizer = null, string outName = "out",
        IProgress<DataProgress>? progress = null) =>
        DataPreparer.Prepare(new DataPrepareOptions
        {
            Inputs = inputs,
            OutputDirectory = dir.File(outName),
            Corpus = corpus ?? new CorpusOptions(),
            ValFraction = valFraction,
            ValDocs = valDocs,
            Seed = seed,
        }, tokenizer ?? Bytes, progress);

    private static int[] ReadAll(string path)
    {
        using var r = new TokenShardReader(path);
        var t = new long[r.Count];
        r.CopyTo(0, t);
        return t.Select(x => (int)x).ToArray();
    }

    /// <summary>Splits a bytes-tokenizer shard at EOS back into document strings.</summary>
    private static List<string> Documents(string path)
    {
        var ids = ReadAll(path);
        var docs = new List<string>();
        var cur = new List<byte>();
        foreach (var id in ids)
        {
            if (id == ByteTokenizer.Eos)
            {
                docs.Add(Encoding.UTF8.GetString(cur.ToArray()));
                cur.Clear();
            }
            else cur.Add((byte)id);
        }
        Assert.Empty(cur);                               // the shard ends with EOS
        return docs;
    }

    [Fact]
    public void TextBlankLineSeparatedDocuments()
    {
        using var dir = new TempDir();
        string a = dir.Write("in/a.txt", "first doc\nsecond line\n\n\nsecond doc\r\n   \nthird doc\n");
        dir.Write("in/sub/b.txt", "\n\nfourth\n");
        dir.Write("in/ignored.csv", "not read");
        var r = Prepare(dir, [dir.File("in")]);
        Assert.Equal(["first doc\nsecond line", "second doc", "third doc", "fourth"], Documents(r.Train.Path));
        Assert.Equal(4, r.Train.Documents);
        Assert.Equal(0, r.Val.Documents);
        Assert.Empty(ReadAll(r.Val.Path));
        Assert.Equal(2, r.Sources.Count);
        Assert.Equal(a, r.Sources[0].Path);              // sorted paths: in/a.txt before in/sub/b.txt
        long textBytes = "first doc\nsecond line".Length + "second doc".Length + "third doc".Length + "fourth".Length;
        Assert.Equal(textBytes, r.Train.Bytes);
        Assert.Equal(textBytes + 4, r.Train.Tokens);    // + one EOS per document
        Assert.Empty(r.Warnings);
    }

    [Fact]
    public void TextDocumentPerFile()
    {
        using var dir = new TempDir();
        dir.Write("in/1.txt", "para one\n\npara two\n");
        dir.Write("in/2.txt", "\n\nonly\n\n\n");
        dir.Write("in/3.txt", "  \n\n");
        var r = Prepare(dir, [dir.File("in")], new CorpusOptions { DocumentPerFile = true });
        Assert.Equal(["para one\n\npara two", "only"], Documents(r.Train.Path));
        Assert.Equal(1, r.EmptyDocuments);
    }

    [Fact]
    public void LongDocumentsAreChunkedButKeepOneEos()
    {
        using var dir = new TempDir();
        var lines = Enumerable.Range(0, 500).Select(i => $"line {i} of a long document").ToList();
        string doc = string.Join("\n", lines);
        dir.Write("long.txt", doc + "\n\nshort doc\n");
        var chunks = new CorpusReader([dir.File("long.txt")], new CorpusOptions { MaxChunkChars = 1000 }).ReadChunks().ToList();
        Assert.True(chunks.Count > 10);
        Assert.All(chunks, c => Assert.True(c.Text.Length <= 1000 + 40));
        Assert.Equal(2, chunks.Count(c => c.IsDocumentEnd));
        var r = Prepare(dir, [dir.File("long.txt")], new CorpusOptions { MaxChunkChars = 1000 });
        Assert.Equal([doc, "short doc"], Documents(r.Train.Path));
        Assert.Equal(2, r.Train.Documents);
    }

    [Fact]
    public void JsonlFieldAndEosPlacement()
    {
        using var dir = new TempDir();
        string path = dir.Write("d.jsonl", "{\"text\": \"alpha\", \"id\": 1}\n\n{\"text\": \"beta\\ngamma\"}\n{\"text\": \"\"}\n{\"body\": \"x\", \"text\": \"delta\"}\n");
        var r = Prepare(dir, [path]);
        Assert.Equal(["alpha", "beta\ngamma", "delta"], Documents(r.Train.Path));
        Assert.Equal(1, r.EmptyDocuments);
        var ids = ReadAll(r.Train.Path);
        Assert.Equal(256, ids[5]);                       // "alpha" then EOS
        Assert.Equal(256, ids[^1]);

        var body = Prepare(dir, [path], new CorpusOptions { JsonlField = "body", SkipBadLines = true }, outName: "body");
        Assert.Equal(["x"], Documents(body.Train.Path));
        Assert.Equal(3, body.SkippedLines);
    }

    [Fact]
    public void JsonlBadLineNamesFileAndLine()
    {
        using var dir = new TempDir();
        string path = dir.Write("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"ok2\"}\n{\"text\": \"broken\n{\"text\": \"ok3\"}\n");
        var e = Assert.Throws<DataException>(() => Prepare(dir, [path]));
        Assert.Contains($"{path}:3:", e.Message);
        Assert.Contains("not valid JSON", e.Message);
        Assert.False(File.Exists(dir.File("out/train.bin")));
        Assert.False(File.Exists(dir.File("out/train.bin.tmp")));

        string missing = dir.Write("missing.jsonl", "{\"text\": \"ok\"}\n{\"content\": \"x\", \"id\": 2}\n");
        var e2 = Assert.Throws<DataException>(() => Prepare(dir, [missing]));
        Assert.Contains($"{missing}:2:", e2.Message);
        Assert.Contains("no field 'text'", e2.Message);
        Assert.Contains("content, id", e2.Message);

        string wrongType = dir.Write("type.jsonl", "[1, 2]\n{\"text\": 5}\n");
        var e3 = Assert.Throws<DataException>(() => Prepare(dir, [wrongType]));
        Assert.Contains($"{wrongType}:1:", e3.Message);

        var skipped = Prepare(dir, [path, wrongType], new CorpusOptions { SkipBadLines = true });
        Assert.Equal(3, skipped.SkippedLines);
        Assert.Equal(["ok", "ok2", "ok3"], Documents(skipped.Train.Path));
        Assert.Contains(skipped.BadLineExamples, m => m.StartsWith($"{path}:3:", StringComparison.Ordinal));
        Assert.Contains(skipped.Warnings, w => w.Contains("3 bad JSONL lines were skipped"));
    }

    [Fact]
    public void ParquetColumnRowGroupsAndNulls()
    {
        using var dir = new TempDir();
        string path = dir.WriteParquet("d.parquet", "content", ["one", "two", null], ["three", "", "four é"]);
        var r = Prepare(dir, [path], new CorpusOptions { ParquetColumn = "content" });
        Assert.Equal(["one", "two", "three", "four é"], Documents(r.Train.Path));
        Assert.Equal(2, r.EmptyDocuments);               // a null and an empty string
        Assert.Equal(CorpusFormat.Parquet, r.Sources[0].Format);

        var e = Assert.Throws<DataException>(() => Prepare(dir, [path]));   // default column "text"
        Assert.Contains(path, e.Message);
        Assert.Contains("no column 'text'", e.Message);
        Assert.Contains("content (string)", e.Message);
        Assert.Contains("id (Int32)", e.Message);

        var e2 = Assert.Throws<DataException>(() => Prepare(dir, [path], new CorpusOptions { ParquetColumn = "id" }));
        Assert.Contains("expected a string", e2.Message);
    }

    [Fact]
    public void MixedFormatsWithGpt2()
    {
        using var dir = new TempDir();
        dir.Write("in/a.txt", "Hello world\n\nSecond doc");
        dir.Write("in/b.jsonl", "{\"text\": \"Hello, world!\"}\n");
        dir.WriteParquet("in/c.parquet", "text", ["The quick brown fox jumps over the lazy dog."]);
        var gpt2 = TokenizerFactory.Gpt2();
        var r = Prepare(dir, [dir.File("in")], tokenizer: gpt2);
        var ids = ReadAll(r.Train.Path);
        int[] expected = [.. gpt2.Encode("Hello world"), 50256, .. gpt2.Encode("Second doc"), 50256, 15496, 11, 995, 0, 50256,
                          464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 50256];
        Assert.Equal(expected, ids);
        Assert.Equal(4, r.Train.Documents);
        using var shard = new TokenShardReader(r.Train.Path);
        Assert.Equal(50257, shard.VocabSize);
        Assert.Equal(50256, shard.EosId);
        Assert.Equal(2, shard.BytesPerToken);
        var meta = JsonNode.Parse(File.ReadAllText(r.MetaPath))!;
        Assert.Equal("gpt2", (string)meta["tokenizer"]!["name"]!);
        Assert.Equal(4, (long)meta["splits"]!["train"]!["documents"]!);
        Assert.Equal(ids.Length, (long)meta["splits"]!["train"]!["tokens"]!);
        Assert.Equal(3, meta["sources"]!.AsArray().Count);
        Assert.Equal("gpt2", TokenizerFactory.Load(r.TokenizerDirectory).Name);
    }

    [Fact]
    public void SplitIsDeterministicAndFilesAreIdentical()
    {
        using var dir = new TempDir();
        string corpus = dir.File("syn.txt");
        SyntheticCorpus.WriteText(corpus, 200_000, seed: 3);
        var r1 = Prepare(dir, [corpus], valFraction: 0.1, seed: 42, outName: "a");
        var r2 = Prepare(dir, [corpus], valFraction: 0.1, seed: 42, outName: "b");
        var r3 = Prepare(dir, [corpus], valFraction: 0.1, seed: 43, outName: "c");
        foreach (var f in new[] { "train.bin", "val.bin", "meta.json" })
            Assert.Equal(File.ReadAllBytes(dir.File("a/" + f)), File.ReadAllBytes(dir.File("b/" + f)));
        Assert.NotEqual(File.ReadAllBytes(dir.File("a/val.bin")), File.ReadAllBytes(dir.File("c/val.bin")));
        long docs = r1.Train.Documents + r1.Val.Documents;
        Assert.Equal(docs, r3.Train.Documents + r3.Val.Documents);
        Assert.InRange(r1.Val.Documents, docs * 0.07, docs * 0.13);
        // every document is in exactly one split: the union of documents is the corpus
        var all = Documents(r1.Train.Path).Concat(Documents(r1.Val.Path)).Order(StringComparer.Ordinal).ToList();
        var expected = new CorpusReader([corpus]).ReadDocuments().Order(StringComparer.Ordinal).ToList();
        Assert.Equal(expected, all);
    }

    [Fact]
    public void ValDocsTakesExactlyN()
    {
        using var dir = new TempDir();
        string corpus = dir.File("syn.txt");
        SyntheticCorpus.WriteText(corpus, 50_000, seed: 1);
        var phases = new List<string>();
        var r = Prepare(dir, [corpus], valDocs: 17, seed: 5, progress: new Collect(phases));
        Assert.Equal(17, r.Val.Documents);
        Assert.Contains("counting", phases);
        Assert.Contains("tokenizing", phases);
        var r2 = Prepare(dir, [corpus], valDocs: 17, seed: 5, outName: "again");
        Assert.Equal(File.ReadAllBytes(r.Val.Path), File.ReadAllBytes(r2.Val.Path));
        long docs = r.Train.Documents + r.Val.Documents;
        var e = Assert.Throws<DataException>(() => Prepare(dir, [corpus], valDocs: docs, outName: "all"));
        Assert.Contains("leaves no training documents", e.Message);
    }

    private sealed class Collect(List<string> phases) : IProgress<DataProgress>
    {
        public void Report(DataProgress value)
        {
            Assert.InRange(value.BytesRead, 0, value.TotalBytes);
            phases.Add(value.Phase);
        }
    }

    [Fact]
    public void EmptyOrMissingInputIsAnError()
    {
        using var dir = new TempDir();
        dir.Write("empty.txt", "");
        dir.Write("blank.txt", "\n  \n\n");
        var e = Assert.Throws<DataException>(() => Prepare(dir, [dir.File("empty.txt"), dir.File("blank.txt")]));
        Assert.Contains("corpus is empty", e.Message);
        Assert.False(File.Exists(dir.File("out/train.bin")));

        var e2 = Assert.Throws<DataException>(() => Prepare(dir, [dir.File("nothing-here")]));
        Assert.Contains("nothing-here", e2.Message);
        Assert.Contains("not found", e2.Message);

        Directory.CreateDirectory(dir.File("emptydir"));
        dir.Write("emptydir/readme.md", "# not a corpus");
        var e3 = Assert.Throws<DataException>(() => Prepare(dir, [dir.File("emptydir")]));
        Assert.Contains("no .txt, .jsonl, .parquet files", e3.Message);

        var e4 = Assert.Throws<DataException>(() => Prepare(dir, [dir.File("emptydir/readme.md")]));
        Assert.Contains("unsupported file type '.md'", e4.Message);

        Assert.Throws<DataException>(() => Prepare(dir, []));
    }

    [Fact]
    public void InvalidUtf8IsReplacedAndCounted()
    {
        using var dir = new TempDir();
        // BOM (skipped, not counted), then: 0xFF (1 byte), 0xC3 followed by '(' (1 byte), a truncated 3-byte sequence at the end (2 bytes)
        byte[] bytes = [0xEF, 0xBB, 0xBF, (byte)'a', 0xFF, (byte)'b', 0xC3, (byte)'(', (byte)'c', (byte)'\n', (byte)'\n', (byte)'d', 0xE2, 0x82];
        string path = dir.WriteBytes("bad.txt", bytes);
        var r = Prepare(dir, [path]);
        Assert.Equal(4, r.ReplacedBytes);
        Assert.Equal(["a\uFFFDb\uFFFD(c", "d\uFFFD"], Documents(r.Train.Path));
        Assert.Contains(r.Warnings, w => w.Contains("4 bytes were not valid UTF-8"));
        var meta = JsonNode.Parse(File.ReadAllText(r.MetaPath))!;
        Assert.Equal(4, (long)meta["replaced_bytes"]!);

        // JSONL lines are decoded the same way
        string jl = dir.WriteBytes("bad.jsonl", [.. "{\"text\": \"x"u8, 0xFF, .. "y\"}\n"u8]);
        var rj = Prepare(dir, [jl], outName: "j");
        Assert.Equal(1, rj.ReplacedBytes);
        Assert.Equal(["x\uFFFDy"], Documents(rj.Train.Path));
    }

    [Fact]
    public void TokenizerWithoutEosIsRejected()
    {
        using var dir = new TempDir();
        string vocab = dir.Write("t/vocab.json", """{"a": 0, "b": 1, "ab": 2}""");
        string merges = dir.Write("t/merges.txt", "a b\n");
        var tok = TokenizerFactory.FromVocabMerges(vocab, merges);
        Assert.Null(tok.EosId);
        dir.Write("c.txt", "ab");
        var e = Assert.Throws<DataException>(() => Prepare(dir, [dir.File("c.txt")], tokenizer: tok));
        Assert.Contains("no EOS", e.Message);
    }
}
