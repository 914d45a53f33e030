using System.Text;
using Parquet;
using Parquet.Schema;

namespace MoRSharp.Tests.Data;

/// <summary>A temporary folder deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "morsharp-data-" + Guid.NewGuid().ToString("N")[..12]);

    public TempDir() => Directory.CreateDirectory(Path);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string Write(string name, string text)
    {
        string p = File(name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(p)!);
        System.IO.File.WriteAllText(p, text, new UTF8Encoding(false));
        return p;
    }

    public string WriteBytes(string name, byte[] bytes)
    {
        string p = File(name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(p)!);
        System.IO.File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>Writes a Parquet file with a string column <paramref name="column"/> and an int column "id", one row group per array.</summary>
    public string WriteParquet(string name, string column, params string?[][] rowGroups)
    {
        string p = File(name);
        var text = new DataField<string>(column);
        var id = new DataField<int>("id");
        using var fs = System.IO.File.Create(p);
        var writer = ParquetWriter.CreateAsync(new ParquetSchema(text, id), fs).GetAwaiter().GetResult();
        try
        {
            int next = 0;
            foreach (var rows in rowGroups)
            {
                using var rg = writer.CreateRowGroup();
                rg.WriteAsync(text, rows!).GetAwaiter().GetResult();
                rg.WriteAsync<int>(id, Enumerable.Range(next, rows.Length).ToArray().AsMemory()).GetAwaiter().GetResult();
                next += rows.Length;
            }
        }
        finally
        {
            writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        return p;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
