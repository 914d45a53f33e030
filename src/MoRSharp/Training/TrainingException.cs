namespace MoRSharp.Training;

/// <summary>Training stopped for a reason the user must see (NaN/Inf loss, bad budget…); nothing invalid was written.</summary>
public sealed class TrainingException(string message) : Exception(message);
