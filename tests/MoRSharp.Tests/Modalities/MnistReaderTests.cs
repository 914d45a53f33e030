using System.IO.Compression;
using MoRSharp.Data;
using MoRSharp.Modalities;
using MoRSharp.Modalities.Image;

namespace MoRSharp.Tests.Modalities;

/// <summary>The MNIST IDX reader, the fixed split, and clear errors for truncated or wrong files.</summary>
public class MnistReaderTests
{
    private static readonly string[] Digits = Enumerable.Range(0, 10).Select(i => i.ToString()).ToArray();

    [Fact]
    public void SharedMnist_SplitsEveryFifthImageIntoValidation()
    {
        var (train, val) = MnistDataset.Load(ModalityTestUtil.Mnist, new ImageFrontEndConfig(), Digits);
        Assert.Equal((8000, 2000), (train.Count, val.Count));
        Assert.Equal(new long[] { 1, 28, 28 }, train.ExampleShape);
        Assert.Equal("t10k-images-idx3-ubyte.gz#4", val.Ids[0]);
        Assert.Equal("t10k-images-idx3-ubyte.gz#0", train.Ids[0]);
        // SOURCES.md class counts of the whole file: 980 / 1135 / 1032 / 1010 / 982 / 892 / 958 / 1028 / 974 / 1009
        var all = train.ClassCounts().Zip(val.ClassCounts(), (a, b) => a + b).ToArray();
        Assert.Equal(new[] { 980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009 }, all);
        Assert.All(val.ClassCounts(), c => Assert.InRange(c, 150, 260));
        // normalised pixels: background (0) maps to −mean/std
        Assert.Equal(-0.1307f / 0.3081f, train.Features.Min(), 4);
    }

    [Fact]
    public void TruncatedGzip_IsAClearError()
    {
        string dir = ModalityTestUtil.TempDir("mnist-gz");
        try
        {
            var images = File.ReadAllBytes(Path.Combine(ModalityTestUtil.Mnist, "t10k-images-idx3-ubyte.gz"));
            File.WriteAllBytes(Path.Combine(dir, "t10k-images-idx3-ubyte.gz"), images[..(images.Length / 2)]);
            File.Copy(Path.Combine(ModalityTestUtil.Mnist, "t10k-labels-idx1-ubyte.gz"), Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"));
            var e = Assert.Throws<DataException>(() => MnistDataset.Load(dir, new ImageFrontEndConfig(), Digits));
            Assert.Contains("t10k-images-idx3-ubyte.gz", e.Message);
            Assert.Matches("truncated|corrupt", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TruncatedIdx_WrongMagic_AndEmptyFolder_AreClearErrors()
    {
        string dir = ModalityTestUtil.TempDir("mnist-idx");
        try
        {
            Assert.Contains("no MNIST IDX files", Assert.Throws<DataException>(() => MnistDataset.Load(dir, new ImageFrontEndConfig(), Digits)).Message);

            // uncompressed IDX, 3 images of 28×28 declared, 2.5 present
            string images = Path.Combine(dir, "t10k-images-idx3-ubyte");
            using (var w = new BinaryWriter(File.Create(images)))
            {
                foreach (int v in new[] { 2051, 3, 28, 28 }) w.Write(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v));
                w.Write(new byte[28 * 28 * 5 / 2]);
            }
            string labels = Path.Combine(dir, "t10k-labels-idx1-ubyte.gz");
            using (var gz = new GZipStream(File.Create(labels), CompressionLevel.Fastest))
            {
                foreach (int v in new[] { 2049, 3 }) gz.Write(BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v)));
                gz.Write(new byte[] { 1, 2, 3 });
            }
            var e = Assert.Throws<DataException>(() => MnistDataset.Load(dir, new ImageFrontEndConfig(), Digits));
            Assert.Contains("t10k-images-idx3-ubyte: truncated: the IDX header declares 3×28×28 = 2,352 data bytes, the file holds 1,960", e.Message);

            File.Copy(labels, images, overwrite: true);                 // a labels file where images are expected
            Assert.Contains("IDX magic 2049", Assert.Throws<DataException>(() => MnistDataset.Load(dir, new ImageFrontEndConfig(), Digits)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
