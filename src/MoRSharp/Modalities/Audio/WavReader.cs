using System.Buffers.Binary;
using System.Text;
using MoRSharp.Data;

namespace MoRSharp.Modalities.Audio;

/// <summary>A decoded WAV file: its format and, for 16-bit PCM, the samples (interleaved when multi-channel).</summary>
public sealed record WavAudio(int SampleRate, int Channels, int BitsPerSample, short[] Samples);

/// <summary>
/// RIFF/WAVE reader for 16-bit PCM (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM sub-format). Chunks other than
/// <c>fmt </c> and <c>data</c> (LIST, fact, …) are skipped, odd-sized chunks keep their pad byte. The encoders take mono
/// 8 kHz 16-bit audio as FSDD ships it; <see cref="ReadPcm16Mono"/> refuses anything else with a message that says what
/// the file holds and how to convert it (this project does not resample).
/// </summary>
public static class WavReader
{
    public static WavAudio Read(string path)
    {
        byte[] b;
        try { b = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw new DataException($"{path}: file not found"); }
        catch (DirectoryNotFoundException) { throw new DataException($"{path}: file not found"); }
        if (b.Length < 12 || Ascii(b, 0) != "RIFF" || Ascii(b, 8) != "WAVE")
            throw new DataException($"{path}: not a WAV file (no RIFF/WAVE header)");
        int pos = 12;
        (int format, int channels, int rate, int bits)? fmt = null;
        while (pos + 8 <= b.Length)
        {
            string id = Ascii(b, pos);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(pos + 4));
            int body = pos + 8;
            if (id == "fmt ")
            {
                if (size < 16 || body + 16 > b.Length) throw new DataException($"{path}: truncated 'fmt ' chunk");
                int format = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(body));
                int channels = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(body + 2));
                int rate = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(body + 4));
                int bits = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(body + 14));
                if (format == 0xFFFE && size >= 40 && body + 26 <= b.Length)
                    format = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(body + 24));   // extensible: the sub-format GUID starts with the real tag
                fmt = (format, channels, rate, bits);
            }
            else if (id == "data")
            {
                if (fmt is not { } f) throw new DataException($"{path}: 'data' chunk before the 'fmt ' chunk");
                if (f.format != 1) throw new DataException($"{path}: audio format {f.format} is not PCM (1); only uncompressed 16-bit PCM WAV is read");
                if (f.bits != 16) throw new DataException($"{path}: {f.bits}-bit samples; expected 16-bit PCM (convert e.g. with: sox IN.wav -b 16 OUT.wav)");
                if (f.channels < 1) throw new DataException($"{path}: {f.channels} channels");
                if (body + size > b.Length)
                    throw new DataException($"{path}: truncated: the 'data' chunk declares {size:N0} bytes, {b.Length - body:N0} are present");
                int frameBytes = 2 * f.channels;
                if (size % frameBytes != 0) throw new DataException($"{path}: 'data' chunk of {size} bytes is not a whole number of {frameBytes}-byte sample frames");
                var samples = new short[size / 2];
                for (int i = 0; i < samples.Length; i++) samples[i] = BinaryPrimitives.ReadInt16LittleEndian(b.AsSpan(body + 2 * i));
                return new WavAudio(f.rate, f.channels, f.bits, samples);
            }
            pos = body + (int)Math.Min(size + (size & 1), int.MaxValue - body);
        }
        throw new DataException(fmt is null ? $"{path}: no 'fmt ' chunk (truncated WAV?)" : $"{path}: no 'data' chunk (truncated WAV?)");
    }

    /// <summary>The samples of a mono 16-bit PCM file at <paramref name="sampleRate"/>, scaled to [−1, 1).</summary>
    public static float[] ReadPcm16Mono(string path, int sampleRate)
    {
        var wav = Read(path);
        if (wav.SampleRate != sampleRate || wav.Channels != 1)
            throw new DataException($"{path}: {wav.SampleRate} Hz, {wav.Channels} channel(s); the model expects {sampleRate} Hz mono 16-bit PCM. " +
                                    $"This project does not resample: convert first, e.g. sox IN.wav -r {sampleRate} -c 1 -b 16 OUT.wav");
        return wav.Samples.Select(s => s / 32768f).ToArray();
    }

    private static string Ascii(byte[] b, int offset) => offset + 4 <= b.Length ? Encoding.ASCII.GetString(b, offset, 4) : "";
}
