//! PyTorch `.pth` reader (torch.save zip + pickle).
