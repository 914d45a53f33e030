using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using MoRSharp.Config;

namespace MoRSharp.Modalities;

/// <summary>The two classification tasks and their command-line names.</summary>
public enum ClassificationTask { ImageClassification, AudioClassification }

/// <summary>Image front-end settings (HF <c>ViTConfig</c> / <c>ViTImageProcessor</c> names).</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class ImageFrontEndConfig
{
    [JsonPropertyName("image_size")] public int ImageSize { get; set; } = 28;
    [JsonPropertyName("patch_size")] public int PatchSize { get; set; } = 4;
    [JsonPropertyName("num_channels")] public int NumChannels { get; set; } = 1;
    /// <summary>Pixels are scaled to [0, 1], then (x − mean)/std (the usual MNIST statistics by default).</summary>
    [JsonPropertyName("image_mean")] public double ImageMean { get; set; } = 0.1307;
    [JsonPropertyName("image_std")] public double ImageStd { get; set; } = 0.3081;

    [JsonIgnore] public int GridSize => ImageSize / PatchSize;
    [JsonIgnore] public int NumPatches => GridSize * GridSize;
}

/// <summary>Audio front-end settings (HF feature-extractor names): log-mel frames of 8 kHz 16-bit mono PCM.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class AudioFrontEndConfig
{
    [JsonPropertyName("sampling_rate")] public int SamplingRate { get; set; } = 8000;
    /// <summary>FFT size = window length (Hann, periodic); 256 samples = 32 ms at 8 kHz.</summary>
    [JsonPropertyName("n_fft")] public int NFft { get; set; } = 256;
    /// <summary>Hop between frames; 128 samples = 16 ms.</summary>
    [JsonPropertyName("hop_length")] public int HopLength { get; set; } = 128;
    [JsonPropertyName("num_mel_bins")] public int NumMelBins { get; set; } = 40;
    [JsonPropertyName("f_min")] public double FMin { get; set; } = 0;
    /// <summary>Upper edge of the mel filterbank; null = Nyquist (sampling_rate / 2).</summary>
    [JsonPropertyName("f_max")] public double? FMax { get; set; }
    /// <summary>Frames per clip: longer clips are centre-cropped, shorter ones zero-padded at the end.</summary>
    [JsonPropertyName("max_frames")] public int MaxFrames { get; set; } = 64;

    [JsonIgnore] public double EffectiveFMax => FMax ?? SamplingRate / 2.0;
    /// <summary>Samples that make exactly <see cref="MaxFrames"/> frames: n_fft + (frames − 1)·hop.</summary>
    [JsonIgnore] public int ClipSamples => NFft + (MaxFrames - 1) * HopLength;
}

/// <summary>
/// <c>encoder.json</c>: what turns an input into tokens for the MoR encoder, and the classification head. The transformer
/// stack itself is an ordinary <c>config.json</c> (<see cref="ModelConfig"/>) beside it, whose <c>vocab_size</c> is the
/// number of classes (the head's output width) and <c>max_position_embeddings</c> the tokens per example.
/// Unknown keys are errors.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed class EncoderConfig
{
    public const string FileName = "encoder.json";

    [JsonPropertyName("task")] public string Task { get; set; } = "image-classification";
    /// <summary>Class names in label order (HF <c>id2label</c>).</summary>
    [JsonPropertyName("labels")] public string[] Labels { get; set; } = Enumerable.Range(0, 10).Select(i => i.ToString()).ToArray();
    /// <summary>Prepend a learned class token (ViT's <c>cls_token</c>) at position 0.</summary>
    [JsonPropertyName("class_token")] public bool ClassToken { get; set; }
    /// <summary>mean (over every token) | cls (the class token's final state).</summary>
    [JsonPropertyName("pooling")] public string Pooling { get; set; } = "mean";
    /// <summary>
    /// Add a learned absolute position embedding (ViT's <c>position_embeddings</c> [1, N, d]) to the tokens, on top of the
    /// rotary positions inside attention (which are relative only).
    /// </summary>
    [JsonPropertyName("learned_positions")] public bool LearnedPositions { get; set; }
    [JsonPropertyName("image")] public ImageFrontEndConfig? Image { get; set; }
    [JsonPropertyName("audio")] public AudioFrontEndConfig? Audio { get; set; }

    [JsonIgnore] public ClassificationTask TaskKind => ParseTask(Task);
    [JsonIgnore] public int NumLabels => Labels.Length;

    /// <summary>Tokens per example: patches or frames, plus the class token.</summary>
    [JsonIgnore]
    public int Tokens => (TaskKind == ClassificationTask.ImageClassification ? Image!.NumPatches : Audio!.MaxFrames) + (ClassToken ? 1 : 0);

    public static string TaskName(ClassificationTask t) => t == ClassificationTask.ImageClassification ? "image-classification" : "audio-classification";

    public static ClassificationTask ParseTask(string? name) => name switch
    {
        "image-classification" => ClassificationTask.ImageClassification,
        "audio-classification" => ClassificationTask.AudioClassification,
        _ => throw new ConfigException($"task: '{name}' is not one of image-classification|audio-classification"),
    };

    /// <summary>The defaults for a task: MNIST-sized images (4×4 patches → 49 tokens) or FSDD clips (64 log-mel frames).</summary>
    public static EncoderConfig Default(ClassificationTask task) => new()
    {
        Task = TaskName(task),
        Image = task == ClassificationTask.ImageClassification ? new ImageFrontEndConfig() : null,
        Audio = task == ClassificationTask.AudioClassification ? new AudioFrontEndConfig() : null,
    };

    public void Validate()
    {
        var task = TaskKind;
        if (Labels.Length < 2) Fail("labels", $"needs at least 2 classes, got {Labels.Length}");
        if (Labels.Distinct().Count() != Labels.Length) Fail("labels", "class names must be distinct");
        if (Pooling is not ("mean" or "cls")) Fail("pooling", $"'{Pooling}' is not one of mean|cls");
        if (Pooling == "cls" && !ClassToken) Fail("pooling", "cls pooling needs class_token: true");
        if (task == ClassificationTask.ImageClassification)
        {
            if (Image is null) Fail("image", "required for image-classification");
            if (Audio is not null) Fail("audio", "must be absent for image-classification");
            var i = Image!;
            Positive("image.image_size", i.ImageSize);
            Positive("image.patch_size", i.PatchSize);
            Positive("image.num_channels", i.NumChannels);
            if (i.ImageSize % i.PatchSize != 0) Fail("image.patch_size", $"must divide image_size {i.ImageSize}, got {i.PatchSize}");
            if (!(i.ImageStd > 0) || !double.IsFinite(i.ImageMean)) Fail("image.image_std", "must be positive (and image_mean finite)");
        }
        else
        {
            if (Audio is null) Fail("audio", "required for audio-classification");
            if (Image is not null) Fail("image", "must be absent for audio-classification");
            var a = Audio!;
            Positive("audio.sampling_rate", a.SamplingRate);
            Positive("audio.hop_length", a.HopLength);
            Positive("audio.num_mel_bins", a.NumMelBins);
            Positive("audio.max_frames", a.MaxFrames);
            if (a.NFft < 4 || (a.NFft & (a.NFft - 1)) != 0) Fail("audio.n_fft", $"must be a power of two ≥ 4, got {a.NFft}");
            if (a.FMin < 0 || a.EffectiveFMax <= a.FMin || a.EffectiveFMax > a.SamplingRate / 2.0)
                Fail("audio.f_max", $"need 0 ≤ f_min < f_max ≤ sampling_rate/2 = {a.SamplingRate / 2.0}, got f_min {a.FMin}, f_max {a.EffectiveFMax}");
            if (a.NumMelBins > a.NFft / 2 + 1) Fail("audio.num_mel_bins", $"at most n_fft/2 + 1 = {a.NFft / 2 + 1} bins, got {a.NumMelBins}");
        }
    }

    private static void Positive(string field, int v)
    {
        if (v <= 0) Fail(field, $"must be positive, got {v}");
    }

    private static void Fail(string field, string what) => throw new ConfigException($"{field}: {what}");

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        AllowTrailingCommas = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
    };

    public static EncoderConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: encoder config not found");
        EncoderConfig? c;
        try { c = JsonSerializer.Deserialize<EncoderConfig>(File.ReadAllText(path), Json); }
        catch (JsonException e) { throw new ConfigException($"{path}: {e.Message}"); }
        if (c is null) throw new ConfigException($"{path}: expected a JSON object");
        try { c.Validate(); }
        catch (ConfigException e) { throw new ConfigException($"{path}: {e.Message}"); }
        return c;
    }

    /// <summary>Writes the file atomically (temp file + rename).</summary>
    public void Save(string path)
    {
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(this, Json) + "\n", new UTF8Encoding(false));
        File.Move(tmp, path, overwrite: true);
    }
}
