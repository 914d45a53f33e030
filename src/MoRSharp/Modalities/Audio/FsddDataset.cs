using System.Globalization;
using System.Text.RegularExpressions;
using MoRSharp.Data;

namespace MoRSharp.Modalities.Audio;

/// <summary>One Free Spoken Digit Dataset recording.</summary>
public sealed record FsddClip(string Path, int Digit, string Speaker, int Take, string Split);

/// <summary>
/// The Free Spoken Digit Dataset: <c>{digit}_{speaker}_{take}.wav</c>, 8 kHz mono 16-bit.
/// <para><b>Split</b>: the dataset's own convention, takes 0–4 = test and takes 5 and above = train, read from the folder's
/// <c>index.csv</c> (columns path, digit, speaker, take, split, …) or, without one, derived from the file names under
/// <c>recordings/</c> (or the folder itself). Every speaker appears in both splits (6 speakers × 10 digits × 5 takes each
/// in the shared copy), so accuracy on it is speaker-dependent.</para>
/// </summary>
public static partial class FsddDataset
{
    public const string IndexFile = "index.csv";

    [GeneratedRegex(@"^(\d)_([A-Za-z]+)_(\d+)\.wav$")]
    private static partial Regex NamePattern();

    /// <summary>The clips of <paramref name="folder"/> in index (or file-name) order.</summary>
    public static IReadOnlyList<FsddClip> Index(string folder)
    {
        if (File.Exists(folder)) throw new DataException($"{folder}: --data for audio-classification is the FSDD folder (index.csv, recordings/), not a file");
        if (!Directory.Exists(folder)) throw new DataException($"{folder}: folder not found");
        string index = System.IO.Path.Combine(folder, IndexFile);
        var clips = File.Exists(index) ? ReadIndex(index) : FromFileNames(folder);
        if (clips.Count == 0)
            throw new DataException($"{folder}: no recordings (expected {IndexFile} or WAV files named {{digit}}_{{speaker}}_{{take}}.wav in recordings/)");
        return clips;
    }

    private static List<FsddClip> ReadIndex(string path)
    {
        var lines = File.ReadAllLines(path).Select(l => l.TrimEnd('\r')).ToList();
        if (lines.Count == 0) throw new DataException($"{path}: empty (expected a header line: path,digit,speaker,take,split,…)");
        var header = lines[0].Split(',');
        int Col(string name)
        {
            int i = Array.IndexOf(header, name);
            return i >= 0 ? i : throw new DataException($"{path}: line 1: no '{name}' column (header: {lines[0]})");
        }
        int cPath = Col("path"), cDigit = Col("digit"), cSpeaker = Col("speaker"), cTake = Col("take"), cSplit = Col("split");
        var clips = new List<FsddClip>();
        for (int i = 1; i < lines.Count; i++)
        {
            if (lines[i].Length == 0) continue;
            var f = lines[i].Split(',');
            if (f.Length != header.Length) throw new DataException($"{path}: line {i + 1}: {f.Length} fields, the header has {header.Length}");
            if (!int.TryParse(f[cDigit], NumberStyles.None, CultureInfo.InvariantCulture, out int digit) || digit > 9)
                throw new DataException($"{path}: line {i + 1}: digit '{f[cDigit]}' is not 0–9");
            if (!int.TryParse(f[cTake], NumberStyles.None, CultureInfo.InvariantCulture, out int take))
                throw new DataException($"{path}: line {i + 1}: take '{f[cTake]}' is not a whole number");
            string split = f[cSplit];
            if (split is not ("train" or "test")) throw new DataException($"{path}: line {i + 1}: split '{split}' is not train or test");
            clips.Add(new FsddClip(f[cPath], digit, f[cSpeaker], take, split));
        }
        return clips;
    }

    private static List<FsddClip> FromFileNames(string folder)
    {
        string recordings = System.IO.Path.Combine(folder, "recordings");
        string dir = Directory.Exists(recordings) ? recordings : folder;
        var clips = new List<FsddClip>();
        foreach (var file in Directory.GetFiles(dir, "*.wav").Order(StringComparer.Ordinal))
        {
            var m = NamePattern().Match(System.IO.Path.GetFileName(file));
            if (!m.Success) continue;
            int take = int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            clips.Add(new FsddClip(System.IO.Path.GetRelativePath(folder, file), m.Groups[1].Value[0] - '0', m.Groups[2].Value, take, take <= 4 ? "test" : "train"));
        }
        return clips;
    }

    /// <summary>(train, test) log-mel examples; <paramref name="progress"/> gets the fraction of clips read.</summary>
    public static (LabeledExamples train, LabeledExamples test) Load(string folder, AudioFrontEndConfig config, string[] labelNames, IProgress<double>? progress = null)
    {
        var clips = Index(folder);
        using var mel = new LogMelSpectrogram(config);
        long size = (long)config.MaxFrames * config.NumMelBins;
        var features = new float[clips.Count * size];
        for (int i = 0; i < clips.Count; i++)
        {
            if (clips[i].Digit >= labelNames.Length) throw new DataException($"{clips[i].Path}: digit {clips[i].Digit} is outside the {labelNames.Length} classes");
            var samples = WavReader.ReadPcm16Mono(System.IO.Path.Combine(folder, clips[i].Path), config.SamplingRate);
            if (samples.Length == 0) throw new DataException($"{System.IO.Path.Combine(folder, clips[i].Path)}: no samples");
            using var f = mel.Features(samples);                                      // [T, M]
            f.data<float>().CopyTo(features, checked((int)(i * size)));
            progress?.Report((i + 1.0) / clips.Count);
        }
        var all = new LabeledExamples(features, [config.MaxFrames, config.NumMelBins], clips.Select(c => (long)c.Digit).ToArray(),
            clips.Select(c => c.Path).ToArray(), labelNames, clips.Select(c => c.Speaker).ToArray());
        var train = Enumerable.Range(0, clips.Count).Where(i => clips[i].Split == "train").ToList();
        var test = Enumerable.Range(0, clips.Count).Where(i => clips[i].Split == "test").ToList();
        if (train.Count == 0 || test.Count == 0) throw new DataException($"{folder}: the split has {train.Count} train and {test.Count} test clips; both must be non-empty");
        return (all.Subset(train), all.Subset(test));
    }

    /// <summary>"george 50, jackson 50, …": examples per speaker, by name.</summary>
    public static string Speakers(LabeledExamples set) =>
        set.Groups is null ? "" : string.Join(", ", set.Groups.GroupBy(g => g).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}"));
}
