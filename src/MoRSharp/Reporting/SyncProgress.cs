namespace MoRSharp.Reporting;

/// <summary>
/// An <see cref="IProgress{T}"/> that calls its action at once on the reporting thread. <see cref="Progress{T}"/> posts to the
/// thread pool in a console program, so its calls can arrive out of order or after the work (and its progress bar) is done.
/// </summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
