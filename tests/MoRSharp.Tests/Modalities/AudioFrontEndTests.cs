using MoRSharp.Data;
using MoRSharp.Modalities;
using MoRSharp.Modalities.Audio;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Modalities;

/// <summary>STFT and mel filterbank against hand computation, WAV reading and its refusals, the FSDD split.</summary>
public class AudioFrontEndTests
{
    [Fact]
    public void PowerSpectrum_MatchesAHandComputedDft()
    {
        var cfg = new AudioFrontEndConfig { NFft = 16, HopLength = 8, NumMelBins = 4, MaxFrames = 2 };
        using var mel = new LogMelSpectrogram(cfg);
        var rng = new Random(11);
        var x = Enumerable.Range(0, 24).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();   // 2 frames: [0, 16) and [8, 24)
        using var power = mel.PowerSpectrum(tensor(x));
        Assert.Equal(new long[] { 2, 9 }, power.shape);
        for (int frame = 0; frame < 2; frame++)
            for (int k = 0; k <= 8; k++)
            {
                // |Σ_n w[n]·x[hop·frame + n]·e^{−2πikn/N}|², periodic Hann w[n] = 0.5 − 0.5·cos(2πn/N)
                double re = 0, im = 0;
                for (int n = 0; n < 16; n++)
                {
                    double v = (0.5 - 0.5 * Math.Cos(2 * Math.PI * n / 16)) * x[8 * frame + n];
                    re += v * Math.Cos(2 * Math.PI * k * n / 16);
                    im -= v * Math.Sin(2 * Math.PI * k * n / 16);
                }
                Assert.Equal(re * re + im * im, power[frame, k].item<float>(), 4);
            }
    }

    [Fact]
    public void MelFilterbank_IsTheHtkTriangles()
    {
        // 8 kHz, n_fft 16: bins every 500 Hz; 2 filters between 0 and 4 kHz have mel edges 0, m/3, 2m/3, m (m = mel(4000))
        var fb = LogMelSpectrogram.MelFilterbank(8000, 16, 2, 0, 4000);
        double top = LogMelSpectrogram.HzToMel(4000);
        double e1 = LogMelSpectrogram.MelToHz(top / 3), e2 = LogMelSpectrogram.MelToHz(2 * top / 3);
        for (int k = 0; k <= 8; k++)
        {
            double f = 500.0 * k;
            double first = Math.Max(0, Math.Min(f / e1, (e2 - f) / (e2 - e1)));
            double second = Math.Max(0, Math.Min((f - e1) / (e2 - e1), (4000 - f) / (4000 - e2)));
            Assert.Equal(first, fb[k, 0], 9);
            Assert.Equal(second, fb[k, 1], 9);
        }
        Assert.Equal(1000.0, LogMelSpectrogram.MelToHz(LogMelSpectrogram.HzToMel(1000.0)), 9);
        Assert.Equal(1000.0, LogMelSpectrogram.HzToMel(1000.0), 0);     // HTK: 1 kHz ≈ 1000 mel
    }

    [Theory]
    [InlineData(5)]
    [InlineData(17)]
    [InlineData(30)]
    public void PureSine_PutsItsEnergyInTheMelBinAtItsFrequency(int bin)
    {
        var cfg = new AudioFrontEndConfig();
        double f = LogMelSpectrogram.CenterHz(bin, cfg.NumMelBins, cfg.FMin, cfg.EffectiveFMax);
        var samples = Enumerable.Range(0, cfg.ClipSamples).Select(n => (float)(0.5 * Math.Sin(2 * Math.PI * f * n / cfg.SamplingRate))).ToArray();
        using var mel = new LogMelSpectrogram(cfg);
        using var features = mel.Features(samples);                     // [64, 40]
        Assert.Equal(new long[] { 64, 40 }, features.shape);
        using var argmax = features.argmax(1);
        Assert.All(argmax.data<long>().ToArray(), a => Assert.Equal(bin, a));
    }

    [Fact]
    public void Features_CropLongClipsAndPadShortOnes()
    {
        var cfg = new AudioFrontEndConfig { NFft = 16, HopLength = 8, NumMelBins = 4, MaxFrames = 3 };   // 32 samples
        using var mel = new LogMelSpectrogram(cfg);
        var ramp = Enumerable.Range(0, 40).Select(i => (float)Math.Sin(i)).ToArray();
        using var long1 = mel.Features(ramp);
        using var centre = mel.LogMel(tensor(ramp[4..36]));             // (40 − 32)/2 = 4 samples cut from each end
        Assert.True(long1.allclose(centre));
        using var shortF = mel.Features(ramp[..16]);                     // padded with zeros to 32
        Assert.Equal(new long[] { 3, 4 }, shortF.shape);
        Assert.Equal(shortF[2].max().item<float>(), shortF.min().item<float>(), 5);   // the last frame (samples 16–31) is silence: at the floor
        Assert.True(shortF[0].min().item<float>() > shortF[2].max().item<float>());
    }

    [Fact]
    public void WavReader_ReadsPcm16AndRefusesOtherFormats()
    {
        string dir = ModalityTestUtil.TempDir("wav");
        try
        {
            string ok = Path.Combine(dir, "ok.wav");
            ModalityTestUtil.WriteWav(ok, [0, 16384, -32768, 32767]);
            Assert.Equal(new[] { 0f, 0.5f, -1f, 32767f / 32768 }, WavReader.ReadPcm16Mono(ok, 8000));

            string rate = Path.Combine(dir, "rate.wav");
            ModalityTestUtil.WriteWav(rate, [1, 2, 3], rate: 16000);
            var e = Assert.Throws<DataException>(() => WavReader.ReadPcm16Mono(rate, 8000));
            Assert.Contains("rate.wav: 16000 Hz", e.Message);
            Assert.Contains("expects 8000 Hz mono 16-bit PCM", e.Message);

            string bits = Path.Combine(dir, "bits.wav");
            ModalityTestUtil.WriteWav(bits, [1, 2, 3], bits: 8);
            Assert.Contains("8-bit samples; expected 16-bit PCM", Assert.Throws<DataException>(() => WavReader.ReadPcm16Mono(bits, 8000)).Message);

            string stereo = Path.Combine(dir, "stereo.wav");
            ModalityTestUtil.WriteWav(stereo, [1, 2, 3, 4], channels: 2);
            Assert.Contains("2 channel(s)", Assert.Throws<DataException>(() => WavReader.ReadPcm16Mono(stereo, 8000)).Message);

            string cut = Path.Combine(dir, "cut.wav");
            var bytes = File.ReadAllBytes(ok);
            File.WriteAllBytes(cut, bytes[..^3]);
            Assert.Contains("truncated", Assert.Throws<DataException>(() => WavReader.Read(cut)).Message);

            string text = Path.Combine(dir, "text.wav");
            File.WriteAllText(text, "not audio at all");
            Assert.Contains("not a WAV file", Assert.Throws<DataException>(() => WavReader.Read(text)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Fsdd_SplitsByTakeAndKeepsEverySpeakerInBoth()
    {
        var clips = FsddDataset.Index(ModalityTestUtil.Fsdd);
        Assert.Equal(600, clips.Count);
        Assert.All(clips, c => Assert.Equal(c.Take <= 4 ? "test" : "train", c.Split));
        foreach (var split in new[] { "train", "test" })
        {
            var bySpeaker = clips.Where(c => c.Split == split).GroupBy(c => c.Speaker).ToDictionary(g => g.Key, g => g.Count());
            Assert.Equal(new[] { "george", "jackson", "lucas", "nicolas", "theo", "yweweler" }, bySpeaker.Keys.Order().ToArray());
            Assert.All(bySpeaker.Values, n => Assert.Equal(50, n));
        }
    }

    [Fact]
    public void Fsdd_WithoutIndexUsesFileNames_AndRefusesEmptyFoldersAndOtherRates()
    {
        string dir = ModalityTestUtil.TempDir("fsdd");
        try
        {
            Assert.Contains("no recordings", Assert.Throws<DataException>(() => FsddDataset.Index(dir)).Message);
            var rec = Directory.CreateDirectory(Path.Combine(dir, "recordings")).FullName;
            var tone = Enumerable.Range(0, 3000).Select(i => (short)(8000 * Math.Sin(i * 0.3))).ToArray();
            ModalityTestUtil.WriteWav(Path.Combine(rec, "3_ann_0.wav"), tone);
            ModalityTestUtil.WriteWav(Path.Combine(rec, "4_ann_7.wav"), tone);
            ModalityTestUtil.WriteWav(Path.Combine(rec, "notes.wav"), tone);    // not {digit}_{speaker}_{take}: ignored
            var clips = FsddDataset.Index(dir);
            Assert.Equal(new[] { ("recordings/3_ann_0.wav", 3, "test"), ("recordings/4_ann_7.wav", 4, "train") },
                clips.Select(c => (c.Path, c.Digit, c.Split)).ToArray());
            var cfg = new AudioFrontEndConfig();
            var labels = Enumerable.Range(0, 10).Select(i => i.ToString()).ToArray();
            var (train, test) = FsddDataset.Load(dir, cfg, labels);
            Assert.Equal(new long[] { 64, 40 }, train.ExampleShape);
            Assert.Equal((1, 1), (train.Count, test.Count));

            ModalityTestUtil.WriteWav(Path.Combine(rec, "5_ann_8.wav"), tone, rate: 16000);
            var e = Assert.Throws<DataException>(() => FsddDataset.Load(dir, cfg, labels));
            Assert.Contains("5_ann_8.wav: 16000 Hz", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
