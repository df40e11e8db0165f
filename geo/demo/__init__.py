"""The generated demo city around Nakhon Si Thammarat."""
