using System.Text;
using MoRSharp.Config;
using MoRSharp.Modalities;

namespace MoRSharp.Tests.Modalities;

public static class ModalityTestUtil
{
    public static string Mnist => SharedData.Path("image/mnist");
    public static string Fsdd => SharedData.Path("audio/fsdd");

    /// <summary>A fresh empty temp folder.</summary>
    public static string TempDir(string name)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mor-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A RIFF/WAVE PCM file: <paramref name="samples"/> written at <paramref name="bits"/> bits (8 or 16), mono unless <paramref name="channels"/>.</summary>
    public static void WriteWav(string path, short[] samples, int rate = 8000, int bits = 16, int channels = 1)
    {
        int bytesPer = bits / 8;
        using var w = new BinaryWriter(File.Create(path));
        int dataBytes = samples.Length * bytesPer;
        w.Write(Encoding.ASCII.GetBytes("RIFF"));
        w.Write(36 + dataBytes);
        w.Write(Encoding.ASCII.GetBytes("WAVEfmt "));
        w.Write(16);
        w.Write((short)1);
        w.Write((short)channels);
        w.Write(rate);
        w.Write(rate * channels * bytesPer);
        w.Write((short)(channels * bytesPer));
        w.Write((short)bits);
        w.Write(Encoding.ASCII.GetBytes("data"));
        w.Write(dataBytes);
        foreach (var s in samples)
        {
            if (bits == 8) w.Write((byte)((s >> 8) + 128));
            else w.Write(s);
        }
    }

    /// <summary>The tiny preset as a classifier stack (d 64, 2 heads, 1 + 1·3 + 1 layers) for <paramref name="encoder"/>.</summary>
    public static ModelConfig TinyStack(EncoderConfig encoder, string preset = "tiny-mor-expert", double init = 0.125)
    {
        var c = Presets.Get(preset);
        c.VocabSize = encoder.NumLabels;
        c.MaxPositionEmbeddings = encoder.Tokens;
        c.BosTokenId = c.EosTokenId = null;
        c.TieWordEmbeddings = false;
        c.InitializerRange = init;
        return c;
    }

    /// <summary>The default image encoder with 7×7 patches (16 tokens): the fast configuration of the learning tests.</summary>
    public static EncoderConfig ImagePatch7()
    {
        var e = EncoderConfig.Default(ClassificationTask.ImageClassification);
        e.Image!.PatchSize = 7;
        return e;
    }

    /// <summary>True when <paramref name="path"/> is a PNG that SkiaSharp decodes to the given size (or any size when 0).</summary>
    public static (int width, int height) DecodePng(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 8 && bytes[..8].SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), $"{path}: no PNG signature");
        using var bmp = SkiaSharp.SKBitmap.Decode(bytes);
        Assert.NotNull(bmp);
        return (bmp.Width, bmp.Height);
    }
}
