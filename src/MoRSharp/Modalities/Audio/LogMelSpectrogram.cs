using static TorchSharp.torch;

namespace MoRSharp.Modalities.Audio;

/// <summary>
/// Log-mel features with TorchSharp: frames of n_fft samples every hop samples (no centre padding), a periodic Hann window,
/// <c>torch.fft.rfft</c>, the power spectrum |X_k|², a triangular mel filterbank, log10, then Whisper's dynamic-range
/// normalisation: clamp at (clip maximum − 8), (x + 4)/4.
/// <para><b>Mel filterbank</b> (HTK): mel(f) = 2595·log10(1 + f/700); M + 2 edges equally spaced in mel from f_min to f_max;
/// filter m rises linearly from edge m to 1 at edge m+1 and falls to 0 at edge m+2, evaluated at the FFT bin frequencies
/// k·sr/n_fft (peak height 1, no area normalisation).</para>
/// <para><b>Fixed length</b>: a clip becomes exactly <see cref="AudioFrontEndConfig.MaxFrames"/> frames — longer clips are
/// centre-cropped to n_fft + (frames − 1)·hop samples, shorter ones zero-padded at the end (silence frames).</para>
/// </summary>
public sealed class LogMelSpectrogram : IDisposable
{
    private readonly AudioFrontEndConfig config;
    private readonly Tensor window;        // [n_fft] float32
    private readonly Tensor filterbank;    // [F = n_fft/2 + 1, M] float32

    public LogMelSpectrogram(AudioFrontEndConfig config)
    {
        this.config = config;
        Native.TorchRuntime.Initialize();
        window = torch.hann_window(config.NFft, periodic: true, dtype: ScalarType.Float32);
        filterbank = torch.tensor(MelFilterbank(config.SamplingRate, config.NFft, config.NumMelBins, config.FMin, config.EffectiveFMax))
            .to_type(ScalarType.Float32);
    }

    public static double HzToMel(double f) => 2595.0 * Math.Log10(1.0 + f / 700.0);
    public static double MelToHz(double m) => 700.0 * (Math.Pow(10.0, m / 2595.0) - 1.0);

    /// <summary>Centre frequency (Hz) of mel filter <paramref name="m"/> (its peak: edge m + 1).</summary>
    public static double CenterHz(int m, int numMels, double fMin, double fMax) =>
        MelToHz(HzToMel(fMin) + (m + 1) * (HzToMel(fMax) - HzToMel(fMin)) / (numMels + 1));

    /// <summary>The HTK triangular filterbank [n_fft/2 + 1, M] (see the class comment).</summary>
    public static double[,] MelFilterbank(int sampleRate, int nFft, int numMels, double fMin, double fMax)
    {
        int bins = nFft / 2 + 1;
        var edges = Enumerable.Range(0, numMels + 2).Select(i => MelToHz(HzToMel(fMin) + i * (HzToMel(fMax) - HzToMel(fMin)) / (numMels + 1))).ToArray();
        var fb = new double[bins, numMels];
        for (int k = 0; k < bins; k++)
        {
            double f = (double)k * sampleRate / nFft;
            for (int m = 0; m < numMels; m++)
            {
                double lo = edges[m], mid = edges[m + 1], hi = edges[m + 2];
                double up = (f - lo) / (mid - lo), down = (hi - f) / (hi - mid);
                fb[k, m] = Math.Max(0, Math.Min(up, down));
            }
        }
        return fb;
    }

    /// <summary>samples [L] → power spectrum [T, n_fft/2 + 1], T = 1 + (L − n_fft)/hop frames.</summary>
    public Tensor PowerSpectrum(Tensor samples)
    {
        if (samples.shape[0] < config.NFft) throw new ArgumentException($"{samples.shape[0]} samples are fewer than one {config.NFft}-sample frame");
        using var scope = NewDisposeScope();
        var frames = samples.unfold(0, config.NFft, config.HopLength) * window;         // [T, n_fft]
        var spectrum = torch.fft.rfft(frames, dim: -1);                                 // [T, F] complex
        var power = spectrum.abs().pow(2);                                              // [T, F]
        return power.MoveToOuterDisposeScope();
    }

    /// <summary>samples [L] → normalised log-mel [T, M] (no fixed length).</summary>
    public Tensor LogMel(Tensor samples)
    {
        using var scope = NewDisposeScope();
        var mel = PowerSpectrum(samples).matmul(filterbank);                            // [T, M]
        var log = mel.clamp_min(1e-10).log10();
        log = torch.maximum(log, log.max() - 8.0);
        return ((log + 4.0) / 4.0).MoveToOuterDisposeScope();
    }

    /// <summary>A clip's samples (any length) → exactly <see cref="AudioFrontEndConfig.MaxFrames"/> normalised log-mel frames [T, M].</summary>
    public Tensor Features(float[] samples)
    {
        int want = config.ClipSamples;
        var clip = new float[want];
        if (samples.Length >= want) Array.Copy(samples, (samples.Length - want) / 2, clip, 0, want);   // centre crop
        else Array.Copy(samples, clip, samples.Length);                                                 // pad the end with silence
        using var t = torch.tensor(clip);
        return LogMel(t);
    }

    public void Dispose()
    {
        window.Dispose();
        filterbank.Dispose();
    }
}
